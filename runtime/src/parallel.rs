//! Which steps of a stage may run at the same time: the disks each step
//! occupies, and the choice of the next step to start.
//!
//! Rules (the executor's `stage()` applies them): a step starts only when
//! every `after` step of its stage has finished; the disks it occupies are
//! free; and no step before it in the compiled order that shares one of its
//! disks is still waiting. So every disk sees its steps in exactly the
//! order of a sequential run, and `--jobs 1` is that sequential run. A step
//! with no place (a command, a manual action, a probe) occupies everything:
//! it runs alone, where the sequential order puts it.

use crate::ldm;
use rplan_compiler::compiled::{CStep, CompiledPlan, StepKind};

/// The disks (indices into `plan.disks`) `step` reads or writes; `None`
/// for a step that must run alone.
pub fn disks(plan: &CompiledPlan, step: &CStep) -> Option<Vec<usize>> {
    let index = |id: &str| plan.disks.iter().position(|d| d.id == id);
    if let Some(v) = &step.volume {
        // A dynamic volume's steps occupy all its member disks.
        let mut d = plan
            .volume(v)?
            .members
            .iter()
            .map(|m| index(&m.disk))
            .collect::<Option<Vec<usize>>>()?;
        d.sort_unstable();
        d.dedup();
        return Some(d);
    }
    let di = index(step.disk.as_deref()?)?;
    if step.kind == StepKind::WriteTable && ldm::is_dynamic(&plan.disks[di]) {
        // The LDM database describes every disk of the group: its writer
        // sees all the targets.
        return Some((0..plan.disks.len()).collect());
    }
    Some(vec![di])
}

/// Where a step of the stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Finished,
}

/// The first step (in compiled order) that may start now, if any.
/// `places[i]` is [`disks`] of step `i`, `after[i]` the indices of the
/// steps it waits for, `busy[d]` whether disk `d` is occupied.
pub fn next(
    states: &[State],
    places: &[Option<Vec<usize>>],
    after: &[Vec<usize>],
    busy: &[bool],
    running: usize,
) -> Option<usize> {
    let overlap = |a: &Option<Vec<usize>>, b: &Option<Vec<usize>>| match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|x| b.contains(x)),
        _ => true,
    };
    (0..states.len()).find(|&i| {
        states[i] == State::Waiting
            && !(0..i).any(|j| states[j] == State::Waiting && overlap(&places[j], &places[i]))
            && match &places[i] {
                None => running == 0,
                Some(d) => !d.iter().any(|&x| busy.get(x).copied().unwrap_or(true)),
            }
            && after[i].iter().all(|&j| states[j] == State::Finished)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn same_disk_keeps_order_and_others_overlap() {
        // 0: disk0, 1: disk1, 2: disk0 after 0, 3: alone.
        let places = vec![Some(vec![0]), Some(vec![1]), Some(vec![0]), None];
        let after = vec![vec![], vec![], vec![0], vec![]];
        let busy = [false, false];
        let mut states = vec![Waiting; 4];
        assert_eq!(next(&states, &places, &after, &busy, 0), Some(0));
        states[0] = Running;
        assert_eq!(next(&states, &places, &after, &[true, false], 1), Some(1));
        states[1] = Running;
        // 2 waits for 0 (its disk and its `after`); 3 waits for everything.
        assert_eq!(next(&states, &places, &after, &[true, true], 2), None);
        states[0] = Finished;
        assert_eq!(next(&states, &places, &after, &[false, true], 1), Some(2));
        states[2] = Running;
        assert_eq!(next(&states, &places, &after, &[true, true], 2), None);
        states[1] = Finished;
        states[2] = Finished;
        assert_eq!(next(&states, &places, &after, &busy, 0), Some(3));
    }

    #[test]
    fn a_later_step_never_passes_an_earlier_one_on_its_disk() {
        let places = vec![Some(vec![0]), Some(vec![0, 1]), Some(vec![1])];
        let after = vec![vec![], vec![], vec![]];
        let mut states = vec![Waiting; 3];
        states[0] = Running;
        // 1 waits for disk 0; 2 must not pass 1 on disk 1.
        assert_eq!(next(&states, &places, &after, &[true, false], 1), None);
    }
}
