//! The batched KV cache: for each layer a key and a value tensor `[rows, heads, width,
//! head size]`, owned by ONNX Runtime (a decode step's `present.*` outputs, fed back as the next
//! step's `past_key_values.*` without a copy). Each row holds its sequence's `len` cached
//! tokens at the right end (`width - len` masked padding columns on the left), so every row
//! grows by one column per step together. Rows are copied only when the batch changes
//! (sequences joining or leaving): [`gather`].

use ort::value::{DynValue, PrimitiveTensorElementType, Tensor};

use super::LmInfo;
use crate::inference::ElementType;

/// One batch's cache.
pub(super) struct Kv {
    /// key 0, value 0, key 1, value 1...: `2 * layers` tensors `[rows, heads, width, head size]`.
    pub values: Vec<DynValue>,
    pub rows: usize,
    pub width: usize,
}

/// A row of a new batch: row `row` of source batch `src`, whose last `len` columns are real.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowSource {
    pub src: usize,
    pub row: usize,
    pub len: usize,
}

/// An empty cache (`width` 0) of `rows` rows: the past of a prefill.
pub(super) fn empty(info: &LmInfo, rows: usize) -> Result<Kv, String> {
    let values = (0..2 * info.layers).map(|_| zeros(info, rows, 0)).collect::<Result<_, _>>()?;
    Ok(Kv { values, rows, width: 0 })
}

fn zeros(info: &LmInfo, rows: usize, width: usize) -> Result<DynValue, String> {
    let shape = vec![rows as i64, info.heads as i64, width as i64, info.head_dim as i64];
    let n = rows * info.heads * width * info.head_dim;
    let v = match info.kv_type {
        ElementType::F16 => Tensor::from_array((shape, vec![half::f16::ZERO; n])).map(|t| t.into_dyn()),
        _ => Tensor::from_array((shape, vec![0f32; n])).map(|t| t.into_dyn()),
    };
    v.map_err(|e| e.to_string())
}

/// A new batch of `rows`, each copied from its source, left-padded to the longest.
pub(super) fn gather(info: &LmInfo, sources: &[&Kv], rows: &[RowSource]) -> Result<Kv, String> {
    match info.kv_type {
        ElementType::F16 => gather_as::<half::f16>(info, sources, rows),
        _ => gather_as::<f32>(info, sources, rows),
    }
}

fn gather_as<T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static>(
    info: &LmInfo,
    sources: &[&Kv],
    rows: &[RowSource],
) -> Result<Kv, String> {
    let (heads, hd) = (info.heads, info.head_dim);
    let width = rows.iter().map(|r| r.len).max().unwrap_or(0);
    let mut values = Vec::with_capacity(2 * info.layers);
    for v in 0..2 * info.layers {
        let mut data = vec![T::default(); rows.len() * heads * width * hd];
        for (r, s) in rows.iter().enumerate() {
            let kv = sources.get(s.src).ok_or("a row from no batch")?;
            let (_, src) = kv.values[v].try_extract_tensor::<T>().map_err(|e| e.to_string())?;
            let sw = kv.width;
            if s.len > sw || s.row >= kv.rows || src.len() != kv.rows * heads * sw * hd {
                return Err(format!("KV row {} of {} (len {}, width {sw}) does not fit its batch", s.row, kv.rows, s.len));
            }
            for h in 0..heads {
                let from = ((s.row * heads + h) * sw + (sw - s.len)) * hd;
                let to = ((r * heads + h) * width + (width - s.len)) * hd;
                data[to..to + s.len * hd].copy_from_slice(&src[from..from + s.len * hd]);
            }
        }
        let shape = vec![rows.len() as i64, heads as i64, width as i64, hd as i64];
        values.push(Tensor::from_array((shape, data)).map_err(|e| e.to_string())?.into_dyn());
    }
    Ok(Kv { values, rows: rows.len(), width })
}

/// Row `row`, position `pos` of `logits` `[rows, positions, vocabulary]`, as f32.
pub(super) fn logits_row(logits: &DynValue, row: usize, out: &mut Vec<f32>) -> Result<(), String> {
    out.clear();
    let shape = match logits.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => shape.clone(),
        _ => return Err("logits is not a tensor".into()),
    };
    let [rows, positions, vocab] = shape[..] else { return Err(format!("logits has shape {:?}, not [batch, sequence, vocabulary]", &shape[..])) };
    let (rows, positions, vocab) = (rows as usize, positions as usize, vocab as usize);
    if row >= rows || positions == 0 {
        return Err(format!("logits has shape {:?}: no row {row}", &shape[..]));
    }
    let at = (row * positions + positions - 1) * vocab;
    if let Ok((_, d)) = logits.try_extract_tensor::<f32>() {
        out.extend_from_slice(d.get(at..at + vocab).ok_or("logits shorter than its shape")?);
    } else {
        let (_, d) = logits.try_extract_tensor::<half::f16>().map_err(|e| e.to_string())?;
        out.extend(d.get(at..at + vocab).ok_or("logits shorter than its shape")?.iter().map(|h| h.to_f32()));
    }
    Ok(())
}
