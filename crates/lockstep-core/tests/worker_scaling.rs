//! Dynamic worker scaling (issue 16, part 3): `WorkerScaling::Auto` uses as many threads as a
//! tick's work calls for, `set_workers` forces a count mid-session, and neither ever changes a
//! hash: the same session with one thread gives the same tick hashes.

mod common;
use common::*;

use lockstep_core::{Digest, Runtime, RuntimeConfig, WorkerScaling};

fn config(workers: usize, worker_scaling: WorkerScaling) -> RuntimeConfig {
    RuntimeConfig { workers, worker_scaling, max_agents: 4_096, seed: 9, checkpoint_interval_ticks: 10, ..RuntimeConfig::development() }
}

/// A session whose load changes 30×: 100 gossip agents, then 3,000, then 100 again (the rest
/// killed). Returns each tick's hash and the workers it used.
fn session(rt: &mut Runtime) -> (Vec<Digest>, Vec<u32>) {
    session_with(rt, |_, _| {})
}

/// `session`, calling `before(rt, t)` before tick `t`.
fn session_with(rt: &mut Runtime, mut before: impl FnMut(&mut Runtime, u64)) -> (Vec<Digest>, Vec<u32>) {
    let gossip = rt.load_module(agent("gossip")).unwrap();
    let mut ids: Vec<u64> = (0..100).map(|_| rt.spawn(gossip).unwrap()).collect();
    let (mut hashes, mut workers) = (Vec::new(), Vec::new());
    for t in 0..36u64 {
        if t == 12 {
            ids.extend((0..2_900).map(|_| rt.spawn(gossip).unwrap()));
        }
        if t == 24 {
            for &id in &ids[100..] {
                rt.kill(id).unwrap();
            }
        }
        before(rt, t);
        let r = rt.tick().unwrap();
        hashes.push(r.hash);
        workers.push(r.workers);
        rt.drain_host_messages();
        rt.drain_dead_letters();
    }
    (hashes, workers)
}

#[test]
fn auto_workers_follow_the_work_and_never_change_a_hash() {
    let (reference, one) = session(&mut Runtime::new(config(1, WorkerScaling::Fixed)).unwrap());
    assert!(one.iter().all(|&w| w == 1));
    let (hashes, used) = session(&mut Runtime::new(config(4, WorkerScaling::Auto)).unwrap());
    assert_eq!(hashes, reference, "the same hashes whatever the threads");
    // 100 agents: one thread; 3,000 (one per 512): four, the most; 100 again: one.
    assert!(used[..12].iter().all(|&w| w == 1), "{used:?}");
    assert!(used[13..24].iter().all(|&w| w == 4), "{used:?}");
    assert!(used[26..].iter().all(|&w| w == 1), "{used:?}");
    // Fixed scaling uses every worker once there is enough work.
    let (hashes, fixed) = session(&mut Runtime::new(config(3, WorkerScaling::Fixed)).unwrap());
    assert_eq!(hashes, reference);
    assert!(fixed.iter().all(|&w| w == 3), "{fixed:?}");
}

#[test]
fn set_workers_resizes_mid_session_and_never_changes_a_hash() {
    let (reference, _) = session(&mut Runtime::new(config(1, WorkerScaling::Fixed)).unwrap());
    let mut rt = Runtime::new(config(4, WorkerScaling::Fixed)).unwrap();
    // Tick t runs on (t % 4) + 1 threads.
    let (hashes, used) = session_with(&mut rt, |rt, t| rt.set_workers(Some((t % 4 + 1) as usize)).unwrap());
    assert_eq!(hashes, reference, "the same hashes on 1, 2, 3, 4, 1, ... threads");
    assert_eq!(used, (0..36).map(|t| (t % 4 + 1) as u32).collect::<Vec<_>>());
    rt.set_workers(None).unwrap();
    assert_eq!(rt.tick().unwrap().workers, 4);
    for bad in [0, 5] {
        assert_eq!(rt.set_workers(Some(bad)).unwrap_err().code(), "E_INVALID_ARGUMENT");
    }
}

/// `agents_stepped` counts every running agent of the tick — a faulted, killed or stopped one
/// not — whatever the workers and however many phases the tick has. (A change that counted
/// the running agents only as far as the worker decision needed reported 0 for one phase.)
#[test]
fn the_report_counts_every_running_agent_as_stepped_whatever_the_workers_and_phases() {
    for workers in [1, 2, 4] {
        for phases in [1i32, 3] {
            let mut rt = Runtime::new(config(workers, WorkerScaling::Fixed)).unwrap();
            let counter = rt.load_module(agent("counter")).unwrap();
            let ids: Vec<u64> = (0..700).map(|i| rt.spawn_with_priority(counter, i % phases).unwrap()).collect();
            assert_eq!(rt.tick().unwrap().agents_stepped, 700, "{workers} workers, {phases} phases");
            for &id in &ids[..50] {
                rt.kill(id).unwrap();
            }
            assert_eq!(rt.tick().unwrap().agents_stepped, 650, "{workers} workers, {phases} phases, 50 killed");
        }
    }
}
