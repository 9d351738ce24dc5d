//! The batched KV cache: for each layer a key and a value tensor `[rows, heads, width,
//! head size]`, in one of two layouts ([`KvLayout`]):
//!
//! - `Concat` (Optimum): owned by ONNX Runtime (a decode step's `present.*` outputs, fed back as
//!   the next step's `past_key_values.*` without a copy by us, though the model itself copies
//!   the whole cache into each new `present`). Each row holds its sequence's `len` cached tokens
//!   at the right end (`width - len` masked padding columns on the left), so every row grows
//!   by one column per step together.
//! - `InPlace` (GroupQueryAttention): `width` is a capacity; each row's `len` tokens are at the
//!   left end, and a step writes each row's new column at its `len`, in the same buffer. When a
//!   row would outgrow it, the batch moves to a larger one ([`capacity`]).
//!
//! Rows are copied only when the batch changes (sequences joining or leaving) or an in-place
//! buffer grows: [`gather`].
//!
//! Where it lives ([`KvDevice`]): host memory, or the GPU's when CUDA serves the model. A
//! GPU-resident cache stays there from step to step (the model's `present.*` outputs are bound
//! to device memory, and fed back as the next step's past); it crosses to the host only to be
//! regathered (rows joining or leaving, an in-place buffer growing: [`to_device`]), counted in
//! `GeneratorStats::kv_transfers`.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::value::{DynTensor, DynTensorValueType, DynValue, PrimitiveTensorElementType, TensorElementType};

use super::{KvLayout, LmInfo};
use crate::inference::{ElementType, Provider};

/// Where a batch's cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDevice {
    /// Host memory (CPU and every provider but CUDA).
    Host,
    /// The memory of CUDA device 0, the one ONNX Runtime's CUDA provider runs on by default.
    Cuda,
}

impl KvDevice {
    /// Where the cache of a model served by `provider`, with this layout and cache type, lives:
    /// GPU memory under CUDA, except for an in-place model with a float32 cache, whose
    /// GroupQueryAttention has no float32 CUDA kernel and runs on the CPU: a device buffer
    /// would be copied to the host and back around it at every step.
    pub fn serving(provider: Provider, layout: KvLayout, kv_type: ElementType) -> Self {
        match (provider, layout, kv_type) {
            (Provider::Cuda, KvLayout::Concat, _) => Self::Cuda,
            (Provider::Cuda, KvLayout::InPlace, ElementType::F16) => Self::Cuda,
            _ => Self::Host,
        }
    }

    /// Its lower-case name (`host`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Cuda => "cuda",
        }
    }

    /// ONNX Runtime's name for it.
    fn allocation_device(self) -> AllocationDevice<'static> {
        match self {
            Self::Host => AllocationDevice::CPU,
            Self::Cuda => AllocationDevice::CUDA,
        }
    }

    /// ONNX Runtime's description of its memory (to bind outputs to it).
    pub(super) fn memory_info(self) -> Result<MemoryInfo<'static>, String> {
        MemoryInfo::new(self.allocation_device(), 0, AllocatorType::Device, MemoryType::Default).map_err(|e| e.to_string())
    }
}

/// One batch's cache.
pub(super) struct Kv {
    /// key 0, value 0, key 1, value 1...: `2 * layers` tensors `[rows, heads, width, head size]`.
    pub values: Vec<DynValue>,
    pub rows: usize,
    /// Columns (`Concat`: the longest row's length; `InPlace`: the buffer's capacity).
    pub width: usize,
    /// Where its tensors are (an empty cache, `rows * width == 0`, always stays on the host).
    pub device: KvDevice,
}

impl Kv {
    /// A cache of nothing (a placeholder while a cache moves).
    pub fn empty() -> Self {
        Self { values: Vec::new(), rows: 0, width: 0, device: KvDevice::Host }
    }
}

/// `kv` on `device`: itself if it is there (or empty), else a copy of every tensor made by
/// ONNX Runtime (one whole-cache transfer, counted in `transfers` once it succeeded). The copy
/// is synchronous: when it returns, the data is on `device`.
pub(super) fn to_device(kv: Kv, device: KvDevice, transfers: &mut u64) -> Result<Kv, String> {
    if kv.device == device || kv.rows * kv.width == 0 {
        return Ok(kv);
    }
    let target = device.allocation_device();
    let values = kv
        .values
        .iter()
        .map(|v| {
            let t = v.view().downcast::<DynTensorValueType>().map_err(|e| e.to_string())?;
            t.to(target.clone(), 0).map(|t| t.into_dyn()).map_err(|e| format!("moving the KV cache to {}: {e}", device.name()))
        })
        .collect::<Result<_, String>>()?;
    *transfers += 1;
    Ok(Kv { values, device, ..kv })
}

/// A row of a new batch: row `row` of source batch `src`, which holds `len` real columns.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowSource {
    pub src: usize,
    pub row: usize,
    pub len: usize,
}

/// Columns of an in-place buffer whose longest row needs `need`: room to grow by half again
/// (at least 32 columns), in multiples of 32, never past `max` (the context).
pub(super) fn capacity(need: usize, max: usize) -> usize {
    (need + (need / 2).max(32)).next_multiple_of(32).min(max).max(need)
}

/// A zeroed cache of `rows` rows and `width` columns (`width` 0: the empty past of a
/// `Concat` prefill). Allocated by ONNX Runtime, so that it can be bound as an output.
pub(super) fn zeroed(info: &LmInfo, rows: usize, width: usize) -> Result<Kv, String> {
    let values = (0..2 * info.layers).map(|_| tensor(info, rows, width)).collect::<Result<_, _>>()?;
    Ok(Kv { values, rows, width, device: KvDevice::Host })
}

fn tensor(info: &LmInfo, rows: usize, width: usize) -> Result<DynValue, String> {
    let shape = [rows, info.heads, width, info.head_dim];
    let ty = match info.kv_type {
        ElementType::F16 => TensorElementType::Float16,
        _ => TensorElementType::Float32,
    };
    let mut t = DynTensor::new(&Allocator::default(), ty, shape).map_err(|e| e.to_string())?;
    // ONNX Runtime leaves new tensors uninitialised; columns past a row's length are never read
    // as keys, but must hold no NaN a kernel could multiply by zero.
    match info.kv_type {
        ElementType::F16 => t.try_extract_tensor_mut::<half::f16>().map_err(|e| e.to_string())?.1.fill(half::f16::ZERO),
        _ => t.try_extract_tensor_mut::<f32>().map_err(|e| e.to_string())?.1.fill(0.0),
    }
    Ok(t.into_dyn())
}

/// A new batch of `rows` and `width` columns, each row copied from its source (right-aligned
/// for `Concat`, left-aligned for `InPlace`), on the host. Sources on a device are copied to
/// the host first: `transfers` counts those copies.
pub(super) fn gather(info: &LmInfo, sources: Vec<Kv>, rows: &[RowSource], width: usize, transfers: &mut u64) -> Result<Kv, String> {
    let on_host = sources.into_iter().map(|kv| to_device(kv, KvDevice::Host, transfers)).collect::<Result<Vec<_>, _>>()?;
    let sources: Vec<&Kv> = on_host.iter().collect();
    match info.kv_type {
        ElementType::F16 => gather_as::<half::f16>(info, &sources, rows, width),
        _ => gather_as::<f32>(info, &sources, rows, width),
    }
}

fn gather_as<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    info: &LmInfo,
    sources: &[&Kv],
    rows: &[RowSource],
    width: usize,
) -> Result<Kv, String> {
    let (heads, hd) = (info.heads, info.head_dim);
    let right = info.layout == KvLayout::Concat;
    if let Some(r) = rows.iter().find(|r| r.len > width) {
        return Err(format!("KV row of {} columns does not fit a batch of {width}", r.len));
    }
    let mut kv = zeroed(info, rows.len(), width)?;
    for (v, value) in kv.values.iter_mut().enumerate() {
        let (_, data) = value.try_extract_tensor_mut::<T>().map_err(|e| e.to_string())?;
        for (r, s) in rows.iter().enumerate() {
            let src_kv = sources.get(s.src).ok_or("a row from no batch")?;
            let (_, src) = src_kv.values[v].try_extract_tensor::<T>().map_err(|e| e.to_string())?;
            let sw = src_kv.width;
            if s.len > sw || s.row >= src_kv.rows || src.len() != src_kv.rows * heads * sw * hd {
                return Err(format!("KV row {} of {} (len {}, width {sw}) does not fit its batch", s.row, src_kv.rows, s.len));
            }
            let (from_col, to_col) = if right { (sw - s.len, width - s.len) } else { (0, 0) };
            for h in 0..heads {
                let from = ((s.row * heads + h) * sw + from_col) * hd;
                let to = ((r * heads + h) * width + to_col) * hd;
                data[to..to + s.len * hd].copy_from_slice(&src[from..from + s.len * hd]);
            }
        }
    }
    Ok(kv)
}

/// Row `row` of `logits` `[rows, positions, vocabulary]` at position `pos` (None: the last),
/// as f32.
pub(super) fn logits_row(logits: &DynValue, row: usize, pos: Option<usize>, out: &mut Vec<f32>) -> Result<(), String> {
    out.clear();
    let shape = match logits.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => shape.clone(),
        _ => return Err("logits is not a tensor".into()),
    };
    let [rows, positions, vocab] = shape[..] else { return Err(format!("logits has shape {:?}, not [batch, sequence, vocabulary]", &shape[..])) };
    let (rows, positions, vocab) = (rows as usize, positions as usize, vocab as usize);
    let pos = pos.unwrap_or(positions.wrapping_sub(1));
    if row >= rows || pos >= positions {
        return Err(format!("logits has shape {:?}: no row {row} position {pos}", &shape[..]));
    }
    let at = (row * positions + pos) * vocab;
    if let Ok((_, d)) = logits.try_extract_tensor::<f32>() {
        out.extend_from_slice(d.get(at..at + vocab).ok_or("logits shorter than its shape")?);
    } else {
        let (_, d) = logits.try_extract_tensor::<half::f16>().map_err(|e| e.to_string())?;
        out.extend(d.get(at..at + vocab).ok_or("logits shorter than its shape")?.iter().map(|h| h.to_f32()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::capacity;

    #[test]
    fn an_in_place_buffer_grows_by_half_in_multiples_of_32_up_to_the_context() {
        assert_eq!(capacity(1, 1024), 64);
        assert_eq!(capacity(32, 1024), 64);
        assert_eq!(capacity(65, 1024), 128);
        assert_eq!(capacity(129, 1024), 224);
        assert_eq!(capacity(1000, 1024), 1024);
        assert_eq!(capacity(1024, 1024), 1024);
        assert_eq!(capacity(10, 10), 10);
        for need in 1..2000 {
            let c = capacity(need, 2048);
            assert!(c >= need && c <= 2048 && (c.is_multiple_of(32) || c == 2048), "{need}: {c}");
        }
    }
}
