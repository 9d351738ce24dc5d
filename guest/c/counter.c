// A lockstep agent in C: counts its steps and answers a kind-1 message with the count.
// Build (clang with the wasm32 target and lld):
//   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic \
//         -Wl,-z,stack-size=65536 -o counter.wasm counter.c
// then sign it with a manifest declaring "send" (see docs/SECURITY.md).
#include <stdint.h>

#define IMPORT(name) __attribute__((import_module("lockstep"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("send") int32_t ls_send(int64_t to, int32_t kind, int32_t priority, const void *ptr, int32_t len);

enum { IO_BUFFER_BYTES = 65536 };
static uint8_t io_buffer[IO_BUFFER_BYTES] __attribute__((aligned(16)));
static uint64_t steps;

static uint64_t read_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint32_t read_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

EXPORT("lockstep_abi_version") int32_t lockstep_abi_version(void) { return 1; }
EXPORT("lockstep_io_buffer") int32_t lockstep_io_buffer(void) { return (int32_t)(uintptr_t)io_buffer; }
EXPORT("agent_init") int32_t agent_init(void) { return 0; }
EXPORT("agent_shutdown") int32_t agent_shutdown(void) { return 0; }

EXPORT("agent_step") int32_t agent_step(int32_t ctx) {
  (void)ctx;
  steps++;
  return 0;
}

// Message header (docs/ABI.md): from u64 @0, to u64 @8, seq u64 @16, kind u32 @24,
// priority i32 @28, payload_len u32 @32, payload @40.
EXPORT("agent_receive") int32_t agent_receive(int32_t msg_ptr) {
  const uint8_t *m = (const uint8_t *)(uintptr_t)msg_ptr;
  if (read_u32(m + 24) == 1) {
    uint64_t count = steps;
    ls_send((int64_t)read_u64(m), 2, 0, &count, sizeof count);
  }
  return 0;
}
