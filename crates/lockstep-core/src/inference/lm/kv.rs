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

use ort::memory::Allocator;
use ort::value::{DynTensor, DynValue, PrimitiveTensorElementType, TensorElementType};

use super::{KvLayout, LmInfo};
use crate::inference::ElementType;

/// One batch's cache.
pub(super) struct Kv {
    /// key 0, value 0, key 1, value 1...: `2 * layers` tensors `[rows, heads, width, head size]`.
    pub values: Vec<DynValue>,
    pub rows: usize,
    /// Columns (`Concat`: the longest row's length; `InPlace`: the buffer's capacity).
    pub width: usize,
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
    Ok(Kv { values, rows, width })
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
/// for `Concat`, left-aligned for `InPlace`).
pub(super) fn gather(info: &LmInfo, sources: &[&Kv], rows: &[RowSource], width: usize) -> Result<Kv, String> {
    match info.kv_type {
        ElementType::F16 => gather_as::<half::f16>(info, sources, rows, width),
        _ => gather_as::<f32>(info, sources, rows, width),
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
