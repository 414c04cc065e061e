//! The capture pipeline: one source stream, read once, compressed into
//! the artifact and hashed at the same time on two threads.
//!
//! The calling thread reads the source (partclone's stdout then the
//! partition's tail, or the partition's bytes) into chunks from a fixed
//! pool; each chunk goes, shared, to a **compress** thread (zstd into the
//! artifact file) and to a **hash** thread (sha256 of the partition's bytes
//! as a restore writes them back: for a partclone image, after expanding
//! it). The slowest of the three sets the pace, not their sum.
//!
//! Memory is bounded by the pool ([`POOL`] × [`CHUNK`]): the reader waits
//! for a chunk both consumers have finished with. Nothing is copied on the
//! way: both threads read the same buffer. zstd's streaming output does
//! not depend on how its input is cut into writes, so the artifact is
//! byte for byte what the one-thread capture wrote.
//!
//! A consumer that fails raises `stop` and keeps handing chunks back
//! until the reader has stopped, so the reader never waits for a chunk
//! that will not come back; the first error is the one reported.

use super::backup::Encoder;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Chunks in flight at most: the pipeline's memory.
pub const POOL: usize = 8;

type Chunk = Arc<Vec<u8>>;

/// One consumer's end: its chunks in order, and the way back to the pool.
pub struct Feed<'a> {
    rx: Receiver<Chunk>,
    pool: Sender<Vec<u8>>,
    stop: &'a AtomicBool,
}

impl Feed<'_> {
    fn recv(&self) -> Option<Chunk> {
        self.rx.recv().ok()
    }

    /// Done with `c`: the last of its two holders returns it to the pool.
    fn give_back(&self, c: Chunk) {
        if let Some(v) = Arc::into_inner(c) {
            let _ = self.pool.send(v);
        }
    }

    /// Every chunk's bytes in turn, handed back once seen.
    pub fn for_each(&self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        while let Some(c) = self.recv() {
            let r = f(&c);
            self.give_back(c);
            r?;
        }
        Ok(())
    }

    /// The chunks as one `Read` stream.
    pub fn reader(&self) -> FeedReader<'_, '_> {
        FeedReader {
            feed: self,
            cur: None,
            at: 0,
        }
    }
}

impl Drop for Feed<'_> {
    /// Stop the reader (a no-op once it has finished) and hand back what
    /// it still sends until it notices.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(c) = self.recv() {
            self.give_back(c);
        }
    }
}

/// A [`Feed`] read as a byte stream.
pub struct FeedReader<'f, 'a> {
    feed: &'f Feed<'a>,
    cur: Option<Chunk>,
    at: usize,
}

impl Read for FeedReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(c) = &self.cur {
                if self.at < c.len() {
                    let n = (c.len() - self.at).min(out.len());
                    out[..n].copy_from_slice(&c[self.at..self.at + n]);
                    self.at += n;
                    return Ok(n);
                }
            }
            if let Some(c) = self.cur.take() {
                self.feed.give_back(c);
            }
            match self.feed.recv() {
                Some(c) => {
                    self.cur = Some(c);
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

impl Drop for FeedReader<'_, '_> {
    fn drop(&mut self) {
        if let Some(c) = self.cur.take() {
            self.feed.give_back(c);
        }
    }
}

/// Fill `buf` from `src` up to its end or the stream's; the bytes read.
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read `src` to its end into `enc` (on its own thread) and into `hash`
/// (on another; it reports the bytes it has hashed in its second
/// argument, which `progress` is called with after each chunk). Gives
/// back what `hash` returned and the encoder, its frame not yet ended.
pub fn run<T: Send>(
    src: &mut dyn Read,
    mut enc: Encoder,
    hash: impl FnOnce(&Feed<'_>, &AtomicU64) -> io::Result<T> + Send,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(T, Encoder)> {
    let stop = AtomicBool::new(false);
    let hashed = AtomicU64::new(0);
    let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..POOL {
        let _ = pool_tx.send(vec![0u8; CHUNK]);
    }
    let (z_tx, z_rx) = mpsc::sync_channel::<Chunk>(POOL);
    let (h_tx, h_rx) = mpsc::sync_channel::<Chunk>(POOL);
    let z_feed = Feed {
        rx: z_rx,
        pool: pool_tx.clone(),
        stop: &stop,
    };
    let h_feed = Feed {
        rx: h_rx,
        pool: pool_tx,
        stop: &stop,
    };
    std::thread::scope(|s| {
        let zt = s.spawn(move || {
            let r = z_feed.for_each(|b| enc.write_all(b));
            drop(z_feed);
            r.map(|()| enc)
        });
        let hashed = &hashed;
        let ht = s.spawn(move || {
            let r = hash(&h_feed, hashed);
            drop(h_feed);
            r
        });
        let read = feed(src, &pool_rx, [z_tx, h_tx], &stop, &mut || {
            progress(hashed.load(Ordering::Relaxed))
        });
        let z = zt
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compress thread panicked")));
        let h = ht
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the hash thread panicked")));
        // The first failure: reading, then hashing (it names damage in the
        // stream), then compressing.
        read?;
        let t = h?;
        let enc = z?;
        progress(hashed.load(Ordering::Relaxed));
        Ok((t, enc))
    })
}

/// The reader: chunks of `src` to both consumers until its end, an error
/// or `stop`. Drops the senders, which ends the consumers' streams.
fn feed(
    src: &mut dyn Read,
    pool: &Receiver<Vec<u8>>,
    to: [SyncSender<Chunk>; 2],
    stop: &AtomicBool,
    progress: &mut dyn FnMut(),
) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        // Both consumers gone (they hold the pool's senders): stop.
        let Ok(mut buf) = pool.recv() else { break };
        buf.resize(CHUNK, 0);
        let n = fill(src, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        // The reader keeps no reference: were it to drop one after both
        // consumers had handed theirs back, the buffer would leave the pool.
        let c = Arc::new(buf);
        let [z, h] = &to;
        if z.send(Arc::clone(&c)).is_err() || h.send(c).is_err() {
            return Ok(());
        }
        progress();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::backup::LEVEL;
    use super::*;

    /// A source of `len` bytes that fails after `fail_at` when set.
    struct Src {
        pos: u64,
        len: u64,
        fail_at: Option<u64>,
    }

    impl Read for Src {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.pos >= f) {
                return Err(io::Error::other("source failed"));
            }
            let n = (self.len - self.pos).min(out.len() as u64 / 3 + 1) as usize;
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = ((self.pos + i as u64) % 251) as u8;
            }
            self.pos += n as u64;
            Ok(n)
        }
    }

    fn enc(dir: &tempfile::TempDir) -> Encoder {
        super::super::backup::encoder(&dir.path().join("a.zst")).unwrap()
    }

    #[test]
    fn both_threads_see_every_byte_in_order_and_the_artifact_decompresses_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let len = (CHUNK * POOL * 3 + 12345) as u64;
        let mut src = Src {
            pos: 0,
            len,
            fail_at: None,
        };
        let mut last = 0;
        let (got, enc) = run(
            &mut src,
            enc(&dir),
            |feed, done| {
                let mut all = Vec::new();
                feed.reader().read_to_end(&mut all)?;
                done.store(all.len() as u64, Ordering::Relaxed);
                Ok(all)
            },
            &mut |d| last = d,
        )
        .unwrap();
        super::super::backup::finish(enc).unwrap();
        assert_eq!(last, len);
        let want: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        assert!(got == want);
        let art = std::fs::read(dir.path().join("a.zst")).unwrap();
        assert!(zstd::decode_all(&art[..]).unwrap() == want);
        // Byte for byte what one encoder fed in other pieces writes (the
        // one-thread capture's artifact): zstd's output does not depend on
        // how its input is cut.
        assert!(art == zstd::stream::encode_all(&want[..], LEVEL).unwrap());
    }

    #[test]
    fn a_failing_consumer_or_source_ends_the_run_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let len = (CHUNK * POOL * 4) as u64;
        // The hash side gives up after one chunk.
        let mut src = Src {
            pos: 0,
            len,
            fail_at: None,
        };
        let err = run(
            &mut src,
            enc(&dir),
            |feed, _| -> io::Result<()> {
                let mut b = [0u8; 10];
                feed.reader().read_exact(&mut b)?;
                Err(io::Error::other("damage"))
            },
            &mut |_| {},
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "damage");
        assert!(src.pos < len, "the reader stopped early");
        // The source fails part way.
        let mut src = Src {
            pos: 0,
            len,
            fail_at: Some(3 * CHUNK as u64),
        };
        let err = run(
            &mut src,
            enc(&dir),
            |feed, _| feed.for_each(|_| Ok(())),
            &mut |_| {},
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "source failed");
    }

    /// Zeros, as fast as they can be read.
    struct Zeros(u64);

    impl Read for Zeros {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.min(out.len() as u64) as usize;
            out[..n].fill(0);
            self.0 -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn no_chunk_leaves_the_pool_whatever_the_threads_timing() {
        // Many short runs, each past the pool's size: a chunk lost from
        // the pool would leave the reader waiting for ever. Run on a thread
        // so a hang is a failure, not a stuck test.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            for _ in 0..30 {
                let mut src = Zeros((CHUNK * (POOL + 3)) as u64);
                let (n, enc) = run(
                    &mut src,
                    enc(&dir),
                    |feed, _| {
                        let mut n = 0u64;
                        feed.for_each(|b| {
                            n += b.len() as u64;
                            Ok(())
                        })?;
                        Ok(n)
                    },
                    // A slow progress bar: the consumers finish each
                    // chunk while the reader is still in here.
                    &mut |_| std::thread::sleep(std::time::Duration::from_millis(1)),
                )
                .unwrap();
                assert_eq!(n, (CHUNK * (POOL + 3)) as u64);
                drop(enc);
            }
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok(),
            "the pipeline hung"
        );
    }
}
