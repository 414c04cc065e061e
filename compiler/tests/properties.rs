//! Properties of compilation over random disk layouts: whenever the compiler
//! accepts a plan, no two partitions of a disk overlap, every partition is
//! inside its disk's usable range, and `order` is a topological order.

use proptest::prelude::*;
use rplan_compiler::analyze::disks::usable_range;
use rplan_compiler::{compile, Options, RuleSet, Source};

#[derive(Debug, Clone)]
struct Part {
    start_mib: Option<u64>,
    size_mib: u64,
    logical: bool,
}

fn plan_text(gpt: bool, disk_mib: u64, parts: &[Part], rest: bool) -> String {
    // XP boots only from MBR and sees GPT disks only on x64: a GPT layout is
    // a data disk (not critical, so no system disk) of an x64 system.
    let mut s = format!(
        "version: 1\nname: prop\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: {} }}\nmedia: {{ build: sp2-slipstream }}\n",
        if gpt { "x64" } else { "x86" }
    );
    s.push_str(&format!(
        "disks:\n  - id: d0\n    critical: {}\n    table: {}\n    size: {disk_mib}MiB\n    partitions:\n",
        !gpt,
        if gpt { "gpt" } else { "mbr" }
    ));
    // An MBR system disk needs its one active primary partition (RP0341):
    // the first primary one, else the `rest` tail.
    let active = if gpt {
        None
    } else {
        parts.iter().position(|p| !p.logical)
    };
    for (i, p) in parts.iter().enumerate() {
        s.push_str(&format!(
            "      - id: p{i}\n        type: linux\n        size: {}MiB\n",
            p.size_mib
        ));
        if let Some(st) = p.start_mib {
            s.push_str(&format!("        start: {st}MiB\n"));
        }
        if p.logical && !gpt {
            s.push_str("        logical: true\n");
        }
        if active == Some(i) {
            s.push_str("        bootable: true\n");
        }
    }
    if rest {
        let bootable = if !gpt && active.is_none() {
            ", bootable: true"
        } else {
            ""
        };
        s.push_str(&format!(
            "      - {{ id: tail, type: linux, size: rest{bootable} }}\n"
        ));
    }
    s.push_str("stages:\n  - { id: safe-mode, kind: safe-mode, actions: [ { run: [/bin/true] } ] }\n  - { id: asr, kind: asr }\n");
    s
}

fn part() -> impl Strategy<Value = Part> {
    (
        proptest::option::weighted(0.3, 0..64_u64),
        1..16_u64,
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(start_mib, size_mib, logical)| Part {
            start_mib,
            size_mib,
            logical,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn accepted_layouts_do_not_overlap(gpt in any::<bool>(), disk_mib in 8..96_u64, parts in proptest::collection::vec(part(), 0..8), rest in any::<bool>()) {
        let text = plan_text(gpt, disk_mib, &parts, rest);
        let out = compile(&Source::new("p.yaml", text.clone()), RuleSet::builtin(), &Options { no_artifacts: true, ..Options::default() });
        let Some(c) = out.compiled else { return Ok(()) };
        for d in &c.disks {
            let ss = u64::from(d.sector_size);
            let (first, end) = usable_range(d.table, ss, d.min_size);
            let mut spans: Vec<(u64, u64, bool)> = d.partitions.iter().map(|p| (p.start, p.start + p.min_size, p.logical)).collect();
            spans.sort_unstable();
            for (a, b, _) in &spans {
                prop_assert!(*a >= first && *b <= end, "partition {a}..{b} outside {first}..{end}\n{text}");
                prop_assert!(a % ss == 0 && b % ss == 0);
            }
            for w in spans.windows(2) {
                // A logical partition also needs its EBR sector free.
                let gap = if w[1].2 { ss } else { 0 };
                prop_assert!(w[0].1 + gap <= w[1].0, "overlap {:?}\n{text}", w);
            }
        }
        let steps: Vec<_> = c.stages.iter().flat_map(|s| &s.steps).collect();
        prop_assert_eq!(c.order.len(), steps.len());
        for st in steps {
            let at = c.order.iter().position(|o| *o == st.id).unwrap();
            for dep in &st.after {
                prop_assert!(c.order.iter().position(|o| o == dep).unwrap() < at);
            }
        }
    }

    #[test]
    fn any_text_compiles_without_panicking(text in "\\PC{0,400}") {
        let _ = compile(&Source::new("p.yaml", text), RuleSet::builtin(), &Options { no_artifacts: true, ..Options::default() });
    }
}

/// The generator's plans are ones the compiler can accept, for both table
/// kinds: otherwise the properties above would hold vacuously.
#[test]
fn simple_generated_layouts_compile() {
    let parts = [Part {
        start_mib: None,
        size_mib: 4,
        logical: false,
    }];
    for gpt in [false, true] {
        let text = plan_text(gpt, 64, &parts, true);
        let out = compile(
            &Source::new("p.yaml", text.clone()),
            RuleSet::builtin(),
            &Options {
                no_artifacts: true,
                ..Options::default()
            },
        );
        assert!(
            out.compiled.is_some(),
            "{text}\n{:?}",
            out.diagnostics
                .iter()
                .map(|d| (&d.code, &d.message))
                .collect::<Vec<_>>()
        );
    }
}
