//! The host-side limits of a runtime (ARCHITECTURE.md, "Limits"; `tests/docs_limits.rs`
//! checks that table against these constants). The limits agents see (message size, budgets
//! per tick, inboxes) are part of the ABI: [`crate::abi`].

/// Most agent ids one runtime assigns over its life (ids are never reused, and each keeps a
/// small record for `inspect`); past it, spawn fails with `E_AGENT_IDS_EXHAUSTED`.
pub const MAX_AGENT_IDS: usize = 1 << 22;

/// Limits of the host-side queues (ARCHITECTURE.md, "Limits"). Host messages waiting for the
/// next tick: past them `send` fails with `E_QUEUE_FULL` and the inbound ring is left unread
/// (back-pressure on the JS producer).
pub const MAX_PENDING_MESSAGES: usize = 1 << 20;
/// Payload bytes of the host messages waiting for the next tick.
pub const MAX_PENDING_BYTES: usize = 256 << 20;
/// Messages agents sent to the host, not yet drained; past these they are dropped and counted
/// (`dropped` event, queue `host_messages`).
pub const MAX_HOST_MESSAGES: usize = 1 << 20;
/// Payload bytes of the messages to the host not yet drained.
pub const MAX_HOST_MESSAGE_BYTES: usize = 256 << 20;
/// Dead letters not yet drained; past these they are dropped and counted (queue
/// `dead_letters`): each was still hashed and announced by its `dead_letter` event.
pub const MAX_DEAD_LETTERS: usize = 1 << 16;
/// Payload bytes of the dead letters not yet drained.
pub const MAX_DEAD_LETTER_BYTES: usize = 64 << 20;
/// Records waiting for room in the outbound ring.
pub const MAX_OUTBOUND_BACKLOG_RECORDS: usize = 1 << 20;
/// Payload bytes waiting for room in the outbound ring.
pub const MAX_OUTBOUND_BACKLOG_BYTES: usize = 256 << 20;
/// Distinct modules one runtime loads (each is compiled code held for the runtime's life).
pub const MAX_MODULES: usize = 1_024;
/// Distinct spawn priorities (each is a phase every tick walks).
pub const MAX_PHASES: usize = 64;
/// Edges of the workflow graph (`Runtime::connect`); past it `connect` fails with
/// `E_EDGE_LIMIT`. Each level of the graph is a phase of every tick (as deep as the agents).
pub const MAX_EDGES: usize = 1 << 20;

/// Live agents of one runtime that hold a time slice (`Runtime::set_fuel_per_tick`; one whose
/// slice was removed still counts while it lives: its calls keep running on a fiber). Each
/// holds a fiber stack for its life; the pooling allocator reserves this many (2 MiB of
/// address space and two memory mappings each), the slab one maps them on demand. Past it
/// `set_fuel_per_tick` fails with `E_INVALID_ARGUMENT`, on either allocator alike.
pub const MAX_SLICED_AGENTS: usize = 10_000;

/// Payload capacity an agent's mailbox (its inbox, its outbox) keeps between ticks for reuse
/// (`mailbox::Mailbox`: payloads live in one arena per mailbox, so a steady flow of messages
/// allocates nothing). A tick that needed more gives the excess back when the mailbox is
/// emptied, so a burst does not pin up to `abi::MAX_INBOX_BYTES` in every agent.
pub const MAX_RETAINED_MAILBOX_BYTES: usize = 64 << 10;
/// Capacity the input queue (host messages, ring input) keeps between ticks for reuse; one
/// queue per runtime, so it may keep a busy tick's worth (past it, it is given back).
pub const MAX_RETAINED_INPUT_BYTES: usize = 16 << 20;

/// Index capacity parallel routing (`scheduler::RouteScratch`, and the grouping of held routes,
/// `held_routes::HeldRoutes`) keeps between ticks for reuse: 40 bytes per message of a phase
/// while it routes (a copy of its header, so that delivering a held message reads only its
/// payload) and 32 more while it is held, so this keeps a phase of ~230,000 messages' worth
/// (past it, the capacity is given back after the phase).
pub const MAX_RETAINED_ROUTE_INDEX_BYTES: usize = 16 << 20;

/// Most records drained from the inbound ring per tick (bounds the work one tick can be
/// handed; the rest waits in the ring for the next tick).
pub const MAX_RING_RECORDS_PER_TICK: usize = 1 << 22;
/// The inbound ring is drained in batches of at most this many records and
/// `RING_BATCH_BYTES` of payload (`Runtime::route_inbound_ring`): each batch is staged (or,
/// when nothing records, held in the ring: `Runtime::route_inbound_ring_held`), then routed
/// recipient by recipient (`scheduler::route_grouped`). The staging mailbox (or the held
/// records' list) keeps one batch's capacity between ticks.
pub const RING_BATCH_RECORDS: usize = 1 << 16;
/// Most payload bytes of one batch of inbound-ring records (see `RING_BATCH_RECORDS`).
pub const RING_BATCH_BYTES: usize = 8 << 20;

/// Most worker threads a runtime may use (`RuntimeConfig::workers`).
pub const MAX_WORKERS: usize = 256;

/// Most bytes of an agent's memory one `read_memory` call returns.
pub const MAX_READ_MEMORY_BYTES: usize = 16 << 20;
/// Most bytes of snapshots a journal cursor keeps in memory (taken as it replays, so a later
/// seek starts near its tick); past it, it keeps no more.
pub const MAX_CURSOR_CACHE_BYTES: usize = 512 << 20;

/// Most tokens of one language-model sequence, prompt and generated together
/// (`LmOptions::max_context` is at most this).
pub const MAX_LM_CONTEXT: usize = 1 << 15;
/// Most sequences one language model decodes together (`GeneratorLimits::max_batch`).
pub const MAX_LM_BATCH: usize = 256;
/// Most generations waiting to join one language model's batch; past it a request is refused
/// (`E_QUEUE_FULL`; an agent's is answered with `GENERATE_STATUS_BUSY`).
pub const MAX_LM_QUEUED: usize = 4_096;
