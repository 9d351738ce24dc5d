//! Tensors as they cross between JS, agents and ONNX Runtime: an element type, a shape and
//! little-endian bytes (exactly a JS typed array's buffer on every platform we ship).

use super::error::InferenceError;

/// A tensor's element type: those JS typed arrays carry, plus bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `bool`: one byte per element, 0 = false.
    Bool,
}

impl ElementType {
    /// The type's name, e.g. `"float32"`, as JS and [`TensorInfo`](crate::inference::TensorInfo) give it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::Bool => "bool",
        }
    }

    /// The type with this name (`float32`, `float64`, `int32`, `int64`, `uint8`, `int8`,
    /// `bool`); `E_UNSUPPORTED_TYPE` for any other.
    pub fn parse(name: &str) -> Result<Self, InferenceError> {
        Ok(match name {
            "float32" => Self::F32,
            "float64" => Self::F64,
            "int32" => Self::I32,
            "int64" => Self::I64,
            "uint8" => Self::U8,
            "int8" => Self::I8,
            "bool" => Self::Bool,
            other => return Err(InferenceError::UnsupportedType { dtype: other.to_string() }),
        })
    }

    /// Bytes per element.
    pub fn size_bytes(&self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::U8 | Self::I8 | Self::Bool => 1,
        }
    }

    /// The element type of an ONNX Runtime tensor type; `E_UNSUPPORTED_TYPE` for the others.
    pub(crate) fn from_ort(t: ort::value::TensorElementType) -> Result<Self, InferenceError> {
        use ort::value::TensorElementType as T;
        Ok(match t {
            T::Float32 => Self::F32,
            T::Float64 => Self::F64,
            T::Int32 => Self::I32,
            T::Int64 => Self::I64,
            T::Uint8 => Self::U8,
            T::Int8 => Self::I8,
            T::Bool => Self::Bool,
            other => return Err(InferenceError::UnsupportedType { dtype: format!("{other:?}") }),
        })
    }
}

macro_rules! to_ort {
    ($t:ty, $n:expr, $shape:expr, $data:expr) => {{
        let values: Vec<$t> = $data.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect();
        ort::value::Tensor::from_array(($shape, values)).map(|t| t.into_dyn())
    }};
}

/// A tensor whose bytes are borrowed (from a JS typed array, or from a `Tensor`): handed to
/// ONNX Runtime without a copy when aligned for its element type.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Element type.
    pub dtype: ElementType,
    /// Dimensions.
    pub shape: &'a [i64],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

macro_rules! view_or_copy {
    ($t:ty, $n:expr, $shape:expr, $data:expr) => {{
        match bytemuck::try_cast_slice::<u8, $t>($data) {
            // Zero-copy: ONNX Runtime reads the caller's buffer in place.
            Ok(values) => ort::value::TensorRef::from_array_view(($shape.to_vec(), values)).map(|t| ort::session::SessionInputValue::from(t.into_dyn())),
            // Misaligned: copy once into an owned tensor.
            Err(_) => to_ort!($t, $n, $shape.to_vec(), $data).map(ort::session::SessionInputValue::from),
        }
    }};
}

impl<'a> TensorView<'a> {
    /// Elements `shape` calls for (negative dimensions count as 0); `usize::MAX` when the
    /// product overflows (a plain product wrapped: [2^62, 4] counted 0 elements, so empty data
    /// passed the length check and only ONNX Runtime's own SafeInt stopped it).
    pub fn element_count(&self) -> usize {
        if self.shape.iter().any(|d| *d <= 0) {
            return 0;
        }
        self.shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d as usize)).unwrap_or(usize::MAX)
    }

    /// Checks that `data` holds exactly the elements `shape` calls for.
    pub fn check_length(&self, name: &str) -> Result<(), InferenceError> {
        let expected = self.element_count().saturating_mul(self.dtype.size_bytes());
        if self.shape.iter().any(|d| *d < 0) || self.data.len() != expected {
            return Err(InferenceError::DataLength {
                name: name.to_string(),
                shape: shape_string(self.shape),
                dtype: self.dtype.name().to_string(),
                expected,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    /// The view as an ONNX Runtime session input: zero-copy when `data` is aligned for the
    /// element type, else copied once (bool is always copied).
    #[allow(clippy::wrong_self_convention)] // a borrowed view; the name mirrors `from_ort`
    pub(crate) fn to_ort(&self) -> Result<ort::session::SessionInputValue<'a>, InferenceError> {
        let (shape, d) = (self.shape, self.data);
        let v = match self.dtype {
            ElementType::F32 => view_or_copy!(f32, 4, shape, d),
            ElementType::F64 => view_or_copy!(f64, 8, shape, d),
            ElementType::I32 => view_or_copy!(i32, 4, shape, d),
            ElementType::I64 => view_or_copy!(i64, 8, shape, d),
            ElementType::U8 => view_or_copy!(u8, 1, shape, d),
            ElementType::I8 => view_or_copy!(i8, 1, shape, d),
            ElementType::Bool => {
                let values: Vec<bool> = d.iter().map(|b| *b != 0).collect();
                ort::value::Tensor::from_array((shape.to_vec(), values)).map(|t| ort::session::SessionInputValue::from(t.into_dyn()))
            }
        };
        v.map_err(|e| InferenceError::Run { reason: e.to_string() })
    }
}

/// A tensor that owns its bytes: element type, shape and little-endian data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: ElementType,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Little-endian element bytes, `shape.product() * dtype.size_bytes()` of them.
    pub data: Vec<u8>,
}

pub fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| if *d < 0 { "?".to_string() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}

macro_rules! from_ort {
    ($t:ty, $value:expr) => {{
        let (shape, values) = $value.try_extract_tensor::<$t>().map_err(|e| InferenceError::Run { reason: e.to_string() })?;
        let mut bytes = Vec::with_capacity(values.len() * std::mem::size_of::<$t>());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        (shape.to_vec(), bytes)
    }};
}

impl Tensor {
    /// A borrowed view of it (for [`InferenceEngine::run_views`](crate::inference::InferenceEngine::run_views)).
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: &self.data }
    }

    /// Elements `shape` calls for, as [`TensorView::element_count`] counts them.
    pub fn element_count(&self) -> usize {
        self.view().element_count()
    }

    /// Checks that `data` holds exactly the elements `shape` calls for; `E_BAD_INPUT_SHAPE`
    /// naming input `name` if not.
    pub fn check_length(&self, name: &str) -> Result<(), InferenceError> {
        self.view().check_length(name)
    }

    /// Copies an ONNX Runtime output into a tensor; `E_UNSUPPORTED_TYPE` for a value that is
    /// not a tensor of a supported element type.
    pub(crate) fn from_ort(value: &ort::value::DynValue) -> Result<Self, InferenceError> {
        let ort::value::ValueType::Tensor { ty, .. } = value.dtype() else {
            return Err(InferenceError::UnsupportedType { dtype: format!("{:?}", value.dtype()) });
        };
        let dtype = ElementType::from_ort(*ty)?;
        let (shape, data) = match dtype {
            ElementType::F32 => from_ort!(f32, value),
            ElementType::F64 => from_ort!(f64, value),
            ElementType::I32 => from_ort!(i32, value),
            ElementType::I64 => from_ort!(i64, value),
            ElementType::U8 => from_ort!(u8, value),
            ElementType::I8 => from_ort!(i8, value),
            ElementType::Bool => {
                let (shape, values) = value.try_extract_tensor::<bool>().map_err(|e| InferenceError::Run { reason: e.to_string() })?;
                (shape.to_vec(), values.iter().map(|b| *b as u8).collect())
            }
        };
        Ok(Self { dtype, shape, data })
    }
}
