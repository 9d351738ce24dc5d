//! Determinism the hard way: the same scenario with 1 and 4 workers, twice, and in a second
//! process, compared tick by tick; then recorded, replayed, tampered with and truncated.

mod common;
use common::*;
use lockstep_core::{replay, Digest, DivergenceKind, LockstepError, MemoryAllocator, Runtime, RuntimeConfig};

const GOSSIP_AGENTS: usize = 300;
const TICKS: u64 = 25;

/// A mixed scenario: gossip, ping-pong, counters, host messages and adversarial agents.
fn scenario(workers: usize) -> (Runtime, Vec<Digest>, Digest) {
    scenario_with(workers, MemoryAllocator::default())
}

fn scenario_with(workers: usize, allocator: MemoryAllocator) -> (Runtime, Vec<Digest>, Digest) {
    let mut rt = Runtime::new(RuntimeConfig {
        allocator,
        workers,
        seed: 7,
        max_agents: 1_024,
        fuel_per_call: 1_000_000,
        memory_limit_bytes: 8 << 20,
        checkpoint_interval_ticks: 10,
        ..RuntimeConfig::development()
    })
    .unwrap();
    let gossip = rt.load_module(agent("gossip")).unwrap();
    for _ in 0..GOSSIP_AGENTS {
        rt.spawn(gossip).unwrap();
    }
    let a = rt.spawn_bytes(agent("ping_pong")).unwrap();
    let b = rt.spawn_bytes(agent("ping_pong")).unwrap();
    let mut payload = b.to_le_bytes().to_vec();
    payload.extend_from_slice(&9u64.to_le_bytes());
    rt.send(a, 0, 0, payload).unwrap();
    let counter = rt.spawn_bytes(agent("counter")).unwrap();
    rt.spawn_bytes(agent("adv_spin")).unwrap();
    rt.spawn_bytes(agent("adv_membomb")).unwrap();
    let trap = rt.spawn_bytes(agent("adv_trap")).unwrap();
    let mut hashes = Vec::new();
    for t in 0..TICKS {
        if t % 5 == 0 {
            rt.send(counter, 1, (t % 3) as i32, t.to_le_bytes().to_vec()).unwrap();
        }
        if t == 12 {
            rt.send(trap, 2, 0, vec![]).unwrap();
        }
        hashes.push(rt.tick().unwrap().hash);
    }
    let deep = rt.deep_hash().hash;
    (rt, hashes, deep)
}

#[test]
fn one_and_four_workers_agree_tick_by_tick() {
    let (_, one, deep1) = scenario(1);
    let (rt4, four, deep4) = scenario(4);
    assert_eq!(one, four);
    assert_eq!(deep1, deep4);
    let (_, again, _) = scenario(4);
    assert_eq!(four, again, "the same scenario twice gives the same hashes");
    // Sanity: the scenario really ran in parallel and did something.
    assert!(rt4.inspect(1).unwrap().messages_received > 0);
    assert_ne!(one[0], one[1]);
}

#[test]
fn memory_allocator_does_not_change_results() {
    let (_, pooled, deep_pooled) = scenario_with(2, MemoryAllocator::Pooling);
    let (_, default, deep_default) = scenario(2);
    assert_eq!(pooled, default);
    assert_eq!(deep_pooled, deep_default);
}

#[test]
fn seed_changes_the_outcome() {
    let run = |seed| {
        let mut rt = Runtime::new(RuntimeConfig { workers: 1, seed, max_agents: 64, ..RuntimeConfig::development() }).unwrap();
        let g = rt.load_module(agent("gossip")).unwrap();
        for _ in 0..20 {
            rt.spawn(g).unwrap();
        }
        rt.run(5).unwrap().unwrap().hash
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// In the child process: print the scenario's hashes for the parent to compare.
#[test]
fn child_prints_hashes() {
    if std::env::var("LOCKSTEP_CHILD").is_err() {
        return;
    }
    let (_, hashes, deep) = scenario(2);
    for h in hashes {
        println!("HASH {h}");
    }
    println!("DEEP {deep}");
}

#[test]
fn a_second_process_computes_the_same_hashes() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "child_prints_hashes", "--nocapture", "--test-threads=1"])
        .env("LOCKSTEP_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let child: Vec<String> = text.lines().filter_map(|l| l.split("HASH ").nth(1).map(String::from)).collect();
    let (_, hashes, deep) = scenario(1);
    let ours: Vec<String> = hashes.iter().map(|h| h.to_hex()).collect();
    assert_eq!(child, ours);
    assert!(text.contains(&format!("DEEP {deep}")));
}

#[test]
fn recorded_session_replays_exactly_with_any_worker_count() {
    let (mut rt, hashes, _) = scenario(4);
    rt.checkpoint();
    let log = rt.stop_recording().unwrap();
    for workers in [1, 2] {
        let report = replay(&log, workers, |_| {}).unwrap();
        assert_eq!(report.divergence, None);
        assert_eq!(report.ticks_verified, TICKS);
        assert_eq!(report.checkpoints_verified, 3, "ticks 10, 20 and the explicit one");
        assert_eq!(report.final_hash, *hashes.last().unwrap());
    }
}

/// Rewrites the payload of the first Send record addressed to `to` and fixes its CRC, so
/// the log parses but tells a different story.
fn tamper_send(log: &mut [u8], to: u64) -> bool {
    let mut pos = 16;
    while pos + 5 <= log.len() {
        let tag = log[pos];
        let len = u32::from_le_bytes(log[pos + 1..pos + 5].try_into().unwrap()) as usize;
        let body = pos + 5;
        if tag == 4 && u64::from_le_bytes(log[body + 8..body + 16].try_into().unwrap()) == to && len > 24 {
            log[body + 24] ^= 0xFF;
            let crc = crc32fast::hash(&log[pos..body + len]);
            log[body + len..body + len + 4].copy_from_slice(&crc.to_le_bytes());
            return true;
        }
        pos = body + len + 4;
    }
    false
}

#[test]
fn tampered_log_names_the_divergent_tick_and_agent() {
    let (mut rt, _, _) = scenario(1);
    let mut log = rt.stop_recording().unwrap();
    let ping = GOSSIP_AGENTS as u64 + 1;
    assert!(tamper_send(&mut log, ping), "found the host's message to ping-pong");
    let report = replay(&log, 1, |_| {}).unwrap();
    let d = report.divergence.expect("a divergence");
    assert_eq!(d.kind, DivergenceKind::TickHash);
    assert_eq!(d.tick, 0, "the message was delivered at tick 0");
    assert_eq!(d.agent, Some(ping), "the agent that received the altered message");
    assert_ne!(d.expected, d.actual);
    assert_eq!(report.ticks_verified, 0);
}

#[test]
fn truncated_and_bit_flipped_logs_are_errors_with_an_offset() {
    let (mut rt, _, _) = scenario(1);
    let log = rt.stop_recording().unwrap();
    let cut = log.len() - 7;
    match replay(&log[..cut], 1, |_| {}) {
        Err(LockstepError::ReplayCorrupt { offset, reason }) => {
            assert!(offset > 16 && (offset as usize) < cut, "{offset}");
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected ReplayCorrupt, got {other:?}"),
    }
    let mut flipped = log.clone();
    flipped[log.len() / 2] ^= 0x10;
    assert!(matches!(replay(&flipped, 1, |_| {}), Err(LockstepError::ReplayCorrupt { .. })));
    assert_eq!(replay(b"not a log at all", 1, |_| {}).unwrap_err().code(), "E_REPLAY_CORRUPT");
}

#[test]
fn recording_must_start_before_the_session() {
    let mut rt = Runtime::new(RuntimeConfig { workers: 1, record: false, max_agents: 8, ..RuntimeConfig::development() }).unwrap();
    assert_eq!(rt.stop_recording().unwrap_err(), LockstepError::NotRecording);
    rt.start_recording().unwrap();
    rt.spawn_bytes(agent("counter")).unwrap();
    rt.tick().unwrap();
    let log = rt.stop_recording().unwrap();
    assert_eq!(rt.start_recording().unwrap_err(), LockstepError::RecordingMidSession);
    assert_eq!(replay(&log, 1, |_| {}).unwrap().ticks_verified, 1);
}

#[test]
fn adversarial_agents_do_not_change_the_others_results() {
    // The well-behaved part of the world: counters and a ping-pong pair, which do not depend
    // on how many agents exist. Adversaries are spawned after them.
    let run = |with_adversaries: bool| {
        let mut rt = runtime(2);
        let a = rt.spawn_bytes(agent("ping_pong")).unwrap();
        let b = rt.spawn_bytes(agent("ping_pong")).unwrap();
        let c = rt.spawn_bytes(agent("counter")).unwrap();
        if with_adversaries {
            rt.spawn_bytes(agent("adv_spin")).unwrap();
            rt.spawn_bytes(agent("adv_membomb")).unwrap();
            rt.spawn_bytes(agent("adv_panic_init")).unwrap();
            let t = rt.spawn_bytes(agent("adv_trap")).unwrap();
            rt.send(t, 1, 0, vec![]).unwrap();
            // A second message to the agent that will die: dead-lettered, disturbs nothing.
            rt.send(t, 0, 0, vec![]).unwrap();
        }
        let mut payload = b.to_le_bytes().to_vec();
        payload.extend_from_slice(&6u64.to_le_bytes());
        rt.send(a, 0, 0, payload).unwrap();
        let mut host = Vec::new();
        for t in 0..12u64 {
            rt.send(c, 1, 0, t.to_le_bytes().to_vec()).unwrap();
            rt.tick().unwrap();
            host.extend(rt.drain_host_messages().into_iter().map(|m| (m.from, m.kind, m.payload)));
        }
        // Memory itself differs in one place by design: the io buffer holds the last step
        // context, which carries max_agent_id. Everything the agents did must match.
        let parts: Vec<_> = [a, b, c]
            .iter()
            .map(|&id| {
                let i = rt.inspect(id).unwrap();
                (i.state, i.steps, i.messages_received, i.messages_sent, i.fuel_consumed, i.memory_bytes)
            })
            .collect();
        (host, parts)
    };
    let (clean_msgs, clean_state) = run(false);
    let (dirty_msgs, dirty_state) = run(true);
    assert!(!clean_msgs.is_empty());
    assert_eq!(clean_msgs, dirty_msgs);
    assert_eq!(clean_state, dirty_state, "the good agents did exactly the same work");
}
