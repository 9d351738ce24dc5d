//! Hands a tick's parallel work (chunks of agents, routing's sender chunks and recipient parts)
//! to the worker threads so that each item goes to the same thread tick after tick.
//!
//! Why: an agent's tick touches a few dozen cache lines of its own (slot, instance, store,
//! linear memory) on many pages. When the threads took the next unclaimed chunk from one shared
//! counter, which thread ran an agent changed from tick to tick, so its lines were in the other
//! core's caches (and its pages in the other core's TLB) about half the time. Now every thread
//! owns a contiguous share of the items (the calling thread the first, pool thread `i` share
//! `i + 1`) and runs it front to back; a thread done with its own share takes from the *back*
//! of the others' (a thread the OS runs late, or that wakes late, leaves its work to the others
//! without them taking the front it is about to run). While the items stay the same (the same
//! live agents make the same chunks), each thread gets the same ones every tick. Measured
//! (BENCHMARKS.md, 2026-11-27, tenth session): 1,000 counters on 2 workers 73–82 → 56–59 µs a
//! tick, same binary.
//!
//! Where locality is not kept (each item still runs exactly once): with `workers: 'auto'` a
//! tick may use fewer threads than the pool has, and rayon gives the jobs to whichever pool
//! threads are free, so those shares change hands between ticks.
//!
//! Which thread runs an item never changes a result: every item touches only its own data, and
//! the tick orders everything it reports canonically afterwards (scheduler).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Runs `work` once on every item of `items` (never twice, never skipped), on up to `workers`
/// threads: the calling one and `workers - 1` of `pool`'s.
pub(crate) fn share_out<T: Send>(pool: &rayon::ThreadPool, workers: usize, items: &[Mutex<T>], work: impl Fn(&mut T) + Sync) {
    let threads = workers.saturating_sub(1).min(pool.current_num_threads()) + 1;
    // A share's ends are 32-bit (one atomic word for both). Callers hand out at most
    // MAX_AGENT_IDS / 64 chunks or 4 parts per worker; past u32::MAX, the rest runs below.
    let shared = items.len().min(u32::MAX as usize);
    let shares: Vec<Share> = (0..threads).map(|w| Share::new(w * shared / threads, (w + 1) * shared / threads)).collect();
    let run = |i: usize| {
        // Each index is handed out once (`Share`), so the lock is never contended: it exists to
        // hand out `&mut` safely.
        if let Some(Ok(mut item)) = items.get(i).map(|m| m.lock()) {
            work(&mut item);
        }
    };
    let take = |me: usize| {
        while let Some(i) = shares[me].take_front() {
            run(i);
        }
        for k in 1..threads {
            let other = &shares[(me + k) % threads];
            while let Some(i) = other.take_back() {
                run(i);
            }
        }
    };
    let take = &take;
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            // Keyed by the pool thread, not by the job: rayon gives the jobs to whichever
            // threads are free, and the same thread must get the same share. (With fewer
            // workers than pool threads two threads may share a key; each item still runs once.)
            scope.spawn(move |_| take(pool.current_thread_index().map_or(0, |i| (i + 1) % threads)));
        }
        take(0);
    });
    for i in shared..items.len() {
        run(i);
    }
}

/// A thread's share of the items, `[front, back)`, packed in one word so that the owner taking
/// from the front and the others from the back never hand out an index twice.
#[repr(align(64))] // one line per share: the threads update their own shares all the time
struct Share(AtomicU64);

impl Share {
    /// `front <= back <= u32::MAX` (`share_out` keeps them there).
    fn new(front: usize, back: usize) -> Self {
        debug_assert!(front <= back && back <= u32::MAX as usize);
        Self(AtomicU64::new(front as u64 | (back as u64) << 32))
    }

    fn take_front(&self) -> Option<usize> {
        self.take(|f, b| (f + 1, b, f))
    }

    fn take_back(&self) -> Option<usize> {
        self.take(|f, b| (f, b - 1, b - 1))
    }

    /// Narrows `[front, back)` by one as `step` says and returns the index it gave up; `None`
    /// once the share is empty.
    fn take(&self, step: impl Fn(u64, u64) -> (u64, u64, u64)) -> Option<usize> {
        let mut now = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (now & 0xffff_ffff, now >> 32);
            if front >= back {
                return None;
            }
            let (f, b, taken) = step(front, back);
            match self.0.compare_exchange_weak(now, f | b << 32, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(taken as usize),
                Err(seen) => now = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Barrier;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
    }

    #[test]
    fn every_item_runs_exactly_once_whatever_the_workers() {
        let p = pool(3);
        for workers in [1, 2, 3, 4, 9] {
            for len in [0, 1, 2, 3, 7, 64, 1000] {
                let items: Vec<Mutex<usize>> = (0..len).map(|_| Mutex::new(0)).collect();
                share_out(&p, workers, &items, |n| *n += 1);
                assert!(items.iter().all(|m| *m.lock().unwrap() == 1), "workers {workers}, {len} items");
            }
        }
    }

    #[test]
    fn a_share_is_handed_out_once_when_taken_from_both_ends_at_once() {
        let share = Share::new(0, 100_000);
        let taken: Vec<AtomicUsize> = (0..100_000).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for front in [true, false, true, false] {
                let (share, taken) = (&share, &taken);
                s.spawn(move || {
                    while let Some(i) = if front { share.take_front() } else { share.take_back() } {
                        taken[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert!(taken.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    }

    /// The calling thread starts at the front of the first share and the pool's thread at the
    /// front of the second, every call: the same agents run on the same thread tick after tick.
    /// (From one shared counter, the pool's thread took item 1 while the caller ran item 0.)
    #[test]
    fn each_thread_starts_its_own_share_every_call() {
        let p = pool(1);
        for _ in 0..20 {
            let both_started = Barrier::new(2);
            let first_of_thread: Vec<Mutex<Option<usize>>> = (0..2).map(|_| Mutex::new(None)).collect();
            let items: Vec<Mutex<usize>> = (0..8).map(Mutex::new).collect();
            share_out(&p, 2, &items, |&mut i| {
                let me = rayon::current_thread_index().map_or(0, |t| t + 1);
                let mut first = first_of_thread[me].lock().unwrap();
                if first.is_none() {
                    *first = Some(i);
                    drop(first);
                    // Neither thread takes a second item before the other has taken its first.
                    both_started.wait();
                }
            });
            assert_eq!(*first_of_thread[0].lock().unwrap(), Some(0), "the calling thread's first item");
            assert_eq!(*first_of_thread[1].lock().unwrap(), Some(4), "the pool thread's first item");
        }
    }
}
