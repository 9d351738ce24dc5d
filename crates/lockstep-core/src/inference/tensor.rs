//! Tensors as they cross between JS, agents and ONNX Runtime: an element type, a shape and
//! bytes — exactly the bytes ONNX Runtime holds for that type (little-endian; sub-byte types
//! packed), except strings, which are the `infer` import's wire encoding (a u32 length then the
//! UTF-8 bytes, per element). The same bytes travel in JS typed arrays, agents' samples and the
//! replay log. docs/INFERENCE.md has the table; lockstep_abi::tensor_type the ids.

use lockstep_abi::tensor_type as abi_type;

use super::error::InferenceError;

/// A tensor's element type: every one ONNX Runtime 1.30 carries (complex numbers aside: ONNX
/// Runtime has no kernels for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// `float16`: IEEE 754 half precision, the raw bits (u16).
    F16,
    /// `bfloat16`: the raw bits (u16).
    BF16,
    /// `uint16`.
    U16,
    /// `int16`.
    I16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `string`: per element a u32 byte length then that much UTF-8 (no NUL).
    String,
    /// `float8e4m3fn`: one byte of raw bits per element.
    F8E4M3FN,
    /// `float8e4m3fnuz`: one byte of raw bits per element.
    F8E4M3FNUZ,
    /// `float8e5m2`: one byte of raw bits per element.
    F8E5M2,
    /// `float8e5m2fnuz`: one byte of raw bits per element.
    F8E5M2FNUZ,
    /// `float8e8m0`: one byte of raw bits per element.
    F8E8M0,
    /// `uint4`: two per byte, the first in the low nibble.
    U4,
    /// `int4`: two per byte (two's complement nibbles), the first in the low nibble.
    I4,
    /// `float4e2m1`: two per byte, the first in the low nibble.
    F4E2M1,
    /// `uint2`: four per byte, the first in the lowest bits.
    U2,
    /// `int2`: four per byte (two's complement), the first in the lowest bits.
    I2,
}

impl ElementType {
    /// Every element type, in the order of docs/INFERENCE.md's table.
    pub const ALL: [ElementType; 24] = [
        Self::F32,
        Self::F64,
        Self::I32,
        Self::I64,
        Self::U8,
        Self::I8,
        Self::Bool,
        Self::F16,
        Self::BF16,
        Self::U16,
        Self::I16,
        Self::U32,
        Self::U64,
        Self::String,
        Self::F8E4M3FN,
        Self::F8E4M3FNUZ,
        Self::F8E5M2,
        Self::F8E5M2FNUZ,
        Self::F8E8M0,
        Self::U4,
        Self::I4,
        Self::F4E2M1,
        Self::U2,
        Self::I2,
    ];

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
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::U16 => "uint16",
            Self::I16 => "int16",
            Self::U32 => "uint32",
            Self::U64 => "uint64",
            Self::String => "string",
            Self::F8E4M3FN => "float8e4m3fn",
            Self::F8E4M3FNUZ => "float8e4m3fnuz",
            Self::F8E5M2 => "float8e5m2",
            Self::F8E5M2FNUZ => "float8e5m2fnuz",
            Self::F8E8M0 => "float8e8m0",
            Self::U4 => "uint4",
            Self::I4 => "int4",
            Self::F4E2M1 => "float4e2m1",
            Self::U2 => "uint2",
            Self::I2 => "int2",
        }
    }

    /// The type with this name (one of [`ElementType::ALL`]'s names); `E_UNSUPPORTED_TYPE` for
    /// any other.
    pub fn parse(name: &str) -> Result<Self, InferenceError> {
        Self::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| InferenceError::UnsupportedType { dtype: name.to_string() })
    }

    /// The type's id in the agent ABI (`lockstep_abi::tensor_type`: ONNX's DataType number).
    pub fn abi_id(&self) -> u32 {
        match self {
            Self::F32 => abi_type::FLOAT32,
            Self::F64 => abi_type::FLOAT64,
            Self::I32 => abi_type::INT32,
            Self::I64 => abi_type::INT64,
            Self::U8 => abi_type::UINT8,
            Self::I8 => abi_type::INT8,
            Self::Bool => abi_type::BOOL,
            Self::F16 => abi_type::FLOAT16,
            Self::BF16 => abi_type::BFLOAT16,
            Self::U16 => abi_type::UINT16,
            Self::I16 => abi_type::INT16,
            Self::U32 => abi_type::UINT32,
            Self::U64 => abi_type::UINT64,
            Self::String => abi_type::STRING,
            Self::F8E4M3FN => abi_type::FLOAT8E4M3FN,
            Self::F8E4M3FNUZ => abi_type::FLOAT8E4M3FNUZ,
            Self::F8E5M2 => abi_type::FLOAT8E5M2,
            Self::F8E5M2FNUZ => abi_type::FLOAT8E5M2FNUZ,
            Self::F8E8M0 => abi_type::FLOAT8E8M0,
            Self::U4 => abi_type::UINT4,
            Self::I4 => abi_type::INT4,
            Self::F4E2M1 => abi_type::FLOAT4E2M1,
            Self::U2 => abi_type::UINT2,
            Self::I2 => abi_type::INT2,
        }
    }

    /// The type with this ABI id; `None` for an id not carried.
    pub fn from_abi_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.abi_id() == id)
    }

    /// Bits per element: 64, 32, 16, 8, 4 or 2; `None` for `string` (variable length).
    pub fn bits(&self) -> Option<usize> {
        match abi_type::bits(self.abi_id()) {
            Some(0) | None => None,
            Some(b) => Some(b as usize),
        }
    }

    /// Bytes that `count` elements take (sub-byte types packed, rounded up to a whole byte);
    /// `None` for `string`, or when the size overflows.
    pub fn byte_len(&self, count: usize) -> Option<usize> {
        abi_type::packed_bytes(self.abi_id(), count)
    }

    /// Whether several elements share a byte (the 4- and 2-bit types).
    pub fn is_sub_byte(&self) -> bool {
        self.bits().is_some_and(|b| b < 8)
    }

    /// The element type of an ONNX Runtime tensor type; `E_UNSUPPORTED_TYPE` for the others
    /// (complex numbers), named in this vocabulary.
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
            T::Float16 => Self::F16,
            T::Bfloat16 => Self::BF16,
            T::Uint16 => Self::U16,
            T::Int16 => Self::I16,
            T::Uint32 => Self::U32,
            T::Uint64 => Self::U64,
            T::String => Self::String,
            T::Float8E4M3FN => Self::F8E4M3FN,
            T::Float8E4M3FNUZ => Self::F8E4M3FNUZ,
            T::Float8E5M2 => Self::F8E5M2,
            T::Float8E5M2FNUZ => Self::F8E5M2FNUZ,
            T::Float8E8M0 => Self::F8E8M0,
            T::Uint4 => Self::U4,
            T::Int4 => Self::I4,
            T::Float4E2M1 => Self::F4E2M1,
            T::Uint2 => Self::U2,
            T::Int2 => Self::I2,
            other => return Err(InferenceError::UnsupportedType { dtype: ort_type_name(other).to_string() }),
        })
    }

    fn to_ort(self) -> ort::value::TensorElementType {
        use ort::value::TensorElementType as T;
        match self {
            Self::F32 => T::Float32,
            Self::F64 => T::Float64,
            Self::I32 => T::Int32,
            Self::I64 => T::Int64,
            Self::U8 => T::Uint8,
            Self::I8 => T::Int8,
            Self::Bool => T::Bool,
            Self::F16 => T::Float16,
            Self::BF16 => T::Bfloat16,
            Self::U16 => T::Uint16,
            Self::I16 => T::Int16,
            Self::U32 => T::Uint32,
            Self::U64 => T::Uint64,
            Self::String => T::String,
            Self::F8E4M3FN => T::Float8E4M3FN,
            Self::F8E4M3FNUZ => T::Float8E4M3FNUZ,
            Self::F8E5M2 => T::Float8E5M2,
            Self::F8E5M2FNUZ => T::Float8E5M2FNUZ,
            Self::F8E8M0 => T::Float8E8M0,
            Self::U4 => T::Uint4,
            Self::I4 => T::Int4,
            Self::F4E2M1 => T::Float4E2M1,
            Self::U2 => T::Uint2,
            Self::I2 => T::Int2,
        }
    }
}

/// The lower-case name of any ONNX Runtime element type, those lockstep does not carry too.
pub(crate) fn ort_type_name(t: ort::value::TensorElementType) -> &'static str {
    use ort::value::TensorElementType as T;
    match t {
        T::Complex64 => "complex64",
        T::Complex128 => "complex128",
        other => ElementType::from_ort(other).map(|e| e.name()).unwrap_or("undefined"),
    }
}

/// The lower-case name of any ONNX value type: `float32`, `sequence<float32>`,
/// `optional<float32>`, `map<string,int64>` (never a Rust debug string).
pub(crate) fn value_type_name(t: &ort::value::ValueType) -> String {
    use ort::value::ValueType as V;
    match t {
        V::Tensor { ty, .. } => ort_type_name(*ty).to_string(),
        V::Sequence(inner) => format!("sequence<{}>", value_type_name(inner)),
        V::Optional(inner) => format!("optional<{}>", value_type_name(inner)),
        V::Map { key, value } => format!("map<{},{}>", ort_type_name(*key), ort_type_name(*value)),
    }
}

/// `strings` in the wire encoding of string tensors: per element a u32 length, then the bytes.
pub fn encode_strings<S: AsRef<str>>(strings: impl IntoIterator<Item = S>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        let s = s.as_ref().as_bytes();
        out.extend_from_slice(&abi_type::string_header(s.len() as u32));
        out.extend_from_slice(s);
    }
    out
}

/// Why string data cannot be read: too short, too long, or an element that is not UTF-8 or
/// holds a NUL (ONNX Runtime takes C strings).
fn decode_strings(data: &[u8], count: usize) -> Result<Vec<&str>, String> {
    let mut rest = data;
    let mut out = Vec::with_capacity(count.min(data.len() / abi_type::STRING_LENGTH_BYTES));
    for i in 0..count {
        let (element, more) = abi_type::split_string(rest).ok_or_else(|| format!("the data ends inside element {i} of {count}"))?;
        let s = std::str::from_utf8(element).map_err(|_| format!("element {i} is not UTF-8"))?;
        if s.contains('\0') {
            return Err(format!("element {i} contains a NUL character, which ONNX Runtime's string tensors cannot hold"));
        }
        out.push(s);
        rest = more;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the last of {count} elements", rest.len()));
    }
    Ok(out)
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
    /// Element bytes (see the module's documentation).
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

/// `float16` / `bfloat16` data: zero-copy when aligned (the `half` types are the u16 bits).
macro_rules! view_or_copy_half {
    ($t:ty, $shape:expr, $data:expr) => {{
        use half::slice::HalfBitsSliceExt as _;
        match bytemuck::try_cast_slice::<u8, u16>($data) {
            Ok(bits) => {
                let values: &[$t] = bits.reinterpret_cast();
                ort::value::TensorRef::from_array_view(($shape.to_vec(), values)).map(|t| ort::session::SessionInputValue::from(t.into_dyn()))
            }
            Err(_) => to_ort!($t, 2, $shape.to_vec(), $data).map(ort::session::SessionInputValue::from),
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

    /// Checks that `data` holds exactly the elements `shape` calls for: the right byte length
    /// for a fixed-width type (`E_BAD_INPUT_SHAPE`); for `string`, that many well-formed
    /// elements of UTF-8 without NUL (`E_BAD_INPUT_VALUE` if not).
    pub fn check_length(&self, name: &str) -> Result<(), InferenceError> {
        let count = self.element_count();
        if self.dtype == ElementType::String && !self.shape.iter().any(|d| *d < 0) && count != usize::MAX {
            return decode_strings(self.data, count).map(|_| ()).map_err(|reason| InferenceError::BadValue { name: name.to_string(), reason });
        }
        let expected = self.dtype.byte_len(count).unwrap_or(usize::MAX);
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
    /// element type, else copied once (bool, string, float8 and sub-byte types are always
    /// copied). Call [`check_length`](Self::check_length) first.
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
            ElementType::U16 => view_or_copy!(u16, 2, shape, d),
            ElementType::I16 => view_or_copy!(i16, 2, shape, d),
            ElementType::U32 => view_or_copy!(u32, 4, shape, d),
            ElementType::U64 => view_or_copy!(u64, 8, shape, d),
            ElementType::F16 => view_or_copy_half!(half::f16, shape, d),
            ElementType::BF16 => view_or_copy_half!(half::bf16, shape, d),
            ElementType::Bool => {
                let values: Vec<bool> = d.iter().map(|b| *b != 0).collect();
                ort::value::Tensor::from_array((shape.to_vec(), values)).map(|t| ort::session::SessionInputValue::from(t.into_dyn()))
            }
            ElementType::String => {
                let strings = decode_strings(d, self.element_count()).map_err(|reason| InferenceError::BadValue { name: String::new(), reason })?;
                // ort takes owned strings here (its borrowed form wants 'static ones).
                let strings: Vec<String> = strings.into_iter().map(str::to_owned).collect();
                ort::value::Tensor::from_string_array((shape.to_vec(), &strings[..])).map(|t| ort::session::SessionInputValue::from(t.into_dyn()))
            }
            // float8 and the sub-byte types have no Rust type: a tensor of ONNX Runtime's own,
            // filled with the bytes (already in its layout).
            other => raw_tensor(other, shape, d).map(ort::session::SessionInputValue::from),
        };
        v.map_err(|e| InferenceError::Run { reason: e.to_string() })
    }
}

/// A tensor of `dtype` allocated by ONNX Runtime holding a copy of `data` (its exact layout).
///
/// ONNX Runtime 1.30's C API numbers uint2, int2 and float8e8m0 24, 25 and 26, where ONNX
/// numbers them 25, 26 and 24, and its `CreateTensorAsOrtValue` casts the C number to ONNX's
/// unconverted — so asking for a uint2 tensor (24) makes a float8e8m0 one. Which number makes
/// `dtype` in this build is therefore found once (`raw_c_type`), and the type of every tensor
/// made is read back all the same: a build where neither number gives `dtype` is an error,
/// never a tensor of another type.
///
/// The tensor is made with the C API itself, not `ort`'s `DynTensor::new`: that one zero-fills
/// as many bytes as the type it was asked for takes, while ONNX Runtime allocated for the type
/// it made, so asking for float8e8m0 (one byte an element) and getting int2 (a quarter) wrote
/// past the allocation (a red team's heap overflow, found at 64 elements). Here nothing is
/// written until the made type is checked, and then exactly the bytes ONNX Runtime says it
/// allocated.
fn raw_tensor(dtype: ElementType, shape: &[i64], data: &[u8]) -> ort::Result<ort::value::DynValue> {
    use ort::AsPointer as _;
    let allocator = ort::memory::Allocator::default();
    let api = ort::api();
    let c_type = raw_c_type(dtype, &allocator)?;
    let mut tensor = new_tensor(&allocator, shape, c_type)?;
    if element_type_of(tensor.ptr())? != dtype.to_ort() {
        return Err(ort::Error::new(format!("ONNX Runtime made another type than {} for an input tensor", dtype.name())));
    }
    let mut size = 0usize;
    // SAFETY: a live tensor value; ONNX Runtime writes its data's size in bytes.
    unsafe { ort::Error::result_from_status((api.GetTensorSizeInBytes)(tensor.ptr(), &mut size)) }?;
    let mut ptr = std::ptr::null_mut();
    // SAFETY: a live tensor value on the CPU (the default allocator's); ONNX Runtime writes its data's address.
    unsafe { ort::Error::result_from_status((api.GetTensorMutableData)(tensor.ptr_mut(), &mut ptr)) }?;
    if size != data.len() || (size > 0 && ptr.is_null()) {
        return Err(ort::Error::new(format!("ONNX Runtime allocated {size} bytes for {} data of {} bytes", dtype.name(), data.len())));
    }
    if size > 0 {
        // SAFETY: ONNX Runtime allocated exactly `size` == `data.len()` bytes at `ptr` for this
        // tensor (checked above), which nothing else refers to yet.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.cast::<u8>(), size) };
    }
    Ok(tensor)
}

/// A tensor of `shape` made by `CreateTensorAsOrtValue` with `c_type` (its data uninitialized,
/// never read here), owned: released when dropped.
fn new_tensor(allocator: &ort::memory::Allocator, shape: &[i64], c_type: ort::sys::ONNXTensorElementDataType) -> ort::Result<ort::value::DynValue> {
    use ort::AsPointer as _;
    let mut value = std::ptr::null_mut();
    // SAFETY: the allocator and the shape outlive the call; ONNX Runtime writes a new value to
    // `value` (and allocates its data) or returns an error.
    unsafe {
        ort::Error::result_from_status((ort::api().CreateTensorAsOrtValue)(allocator.ptr().cast_mut(), shape.as_ptr(), shape.len(), c_type, &mut value))
    }?;
    let value = std::ptr::NonNull::new(value).ok_or_else(|| ort::Error::new("ONNX Runtime made no tensor"))?;
    // SAFETY: `value` is the tensor just made with `allocator`, owned from here.
    Ok(unsafe { ort::value::Value::from_ptr(value, Some(allocator)) })
}

/// The C type number that makes a tensor of `dtype` in this ONNX Runtime build: the C API's
/// own, or, where the build casts it to ONNX's numbering (see `raw_tensor`), ONNX's. Found once
/// per type with a one-element tensor of each (nothing written to them), then kept: a large
/// input made first with the wrong number was allocated at that type's size (4× for an int2
/// made as a float8e8m0), and could fail where the right one fits.
fn raw_c_type(dtype: ElementType, allocator: &ort::memory::Allocator) -> ort::Result<ort::sys::ONNXTensorElementDataType> {
    use ort::AsPointer as _;
    static FOUND: [std::sync::OnceLock<ort::sys::ONNXTensorElementDataType>; 64] = [const { std::sync::OnceLock::new() }; 64];
    let slot = FOUND.get(dtype.abi_id() as usize);
    if let Some(c) = slot.and_then(|s| s.get()) {
        return Ok(*c);
    }
    for c_type in [dtype.to_ort().into(), onnx_numbered_c_type(dtype.abi_id())] {
        if element_type_of(new_tensor(allocator, &[1], c_type)?.ptr())? == dtype.to_ort() {
            if let Some(s) = slot {
                let _ = s.set(c_type);
            }
            return Ok(c_type);
        }
    }
    Err(ort::Error::new(format!("this ONNX Runtime build cannot make an input tensor of {}", dtype.name())))
}

/// The C API element type whose number is `onnx_id` (ONNX's number of a type).
fn onnx_numbered_c_type(onnx_id: u32) -> ort::sys::ONNXTensorElementDataType {
    use ort::sys::ONNXTensorElementDataType as C;
    match onnx_id {
        24 => C::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT2,
        25 => C::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT2,
        26 => C::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E8M0,
        // Below 24 the two numberings agree.
        _ => ElementType::from_abi_id(onnx_id).map(|t| t.to_ort().into()).unwrap_or(C::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED),
    }
}

/// The element type ONNX Runtime itself reports for a tensor value (not the one asked for).
fn element_type_of(tensor: *const ort::sys::OrtValue) -> ort::Result<ort::value::TensorElementType> {
    let api = ort::api();
    let mut info = std::ptr::null_mut();
    // SAFETY: `tensor` is a live tensor value; ONNX Runtime writes a new info object to `info`.
    unsafe { ort::Error::result_from_status((api.GetTensorTypeAndShape)(tensor, &mut info)) }?;
    let mut ty = ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    // SAFETY: `info` is the live object just made; it is released right after.
    let status = unsafe { (api.GetTensorElementType)(info, &mut ty) };
    // SAFETY: `info` was made by GetTensorTypeAndShape above and is not used after this.
    unsafe { (api.ReleaseTensorTypeAndShapeInfo)(info) };
    // SAFETY: `status` was just returned by ONNX Runtime, and is consumed here.
    unsafe { ort::Error::result_from_status(status) }?;
    Ok(ty.into())
}

/// A tensor that owns its bytes: element type, shape and data (see the module's documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: ElementType,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Element bytes: `dtype.byte_len(shape.product())` of them, or for `string` the encoded
    /// elements ([`encode_strings`]).
    pub data: Vec<u8>,
}

/// A model output: a tensor, or a sequence of tensors (ONNX `seq(tensor(...))`).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A tensor.
    Tensor(Tensor),
    /// A sequence of tensors, possibly empty.
    Sequence(Vec<Tensor>),
}

impl Output {
    /// The tensor, if this output is one.
    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Self::Tensor(t) => Some(t),
            Self::Sequence(_) => None,
        }
    }

    /// The tensor, if this output is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Self::Tensor(t) => Some(t),
            Self::Sequence(_) => None,
        }
    }

    pub(crate) fn from_ort(value: &ort::value::DynValue) -> Result<Self, InferenceError> {
        match value.dtype() {
            ort::value::ValueType::Sequence(_) => {
                let run_err = |e: ort::Error| InferenceError::Run { reason: e.to_string() };
                let seq = value.view().downcast::<ort::value::DynSequenceValueType>().map_err(run_err)?;
                let items = seq.try_extract_sequence::<ort::value::DynValueTypeMarker>().map_err(run_err)?;
                items.iter().map(Tensor::from_ort).collect::<Result<Vec<_>, _>>().map(Self::Sequence)
            }
            _ => Tensor::from_ort(value).map(Self::Tensor),
        }
    }
}

pub fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| if *d < 0 { "?".to_string() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}

impl Tensor {
    /// A string tensor of `shape` holding `strings` (in row-major order).
    pub fn from_strings<S: AsRef<str>>(shape: Vec<i64>, strings: impl IntoIterator<Item = S>) -> Self {
        Self { dtype: ElementType::String, shape, data: encode_strings(strings) }
    }

    /// The elements of a string tensor; `None` for another type or malformed data.
    pub fn strings(&self) -> Option<Vec<&str>> {
        (self.dtype == ElementType::String).then(|| decode_strings(&self.data, self.element_count()).ok()).flatten()
    }

    /// A borrowed view of it (for [`InferenceEngine::run_views`](crate::inference::InferenceEngine::run_views)).
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: &self.data }
    }

    /// Elements `shape` calls for, as [`TensorView::element_count`] counts them.
    pub fn element_count(&self) -> usize {
        self.view().element_count()
    }

    /// Checks that `data` holds exactly the elements `shape` calls for; `E_BAD_INPUT_SHAPE`
    /// (or `E_BAD_INPUT_VALUE` for malformed strings) naming input `name` if not.
    pub fn check_length(&self, name: &str) -> Result<(), InferenceError> {
        self.view().check_length(name)
    }

    /// Copies an ONNX Runtime tensor into a tensor; `E_UNSUPPORTED_TYPE` for a value that is
    /// not a tensor (or of complex numbers: a model with one is refused at load, so this is
    /// never reached after a run).
    pub(crate) fn from_ort(value: &ort::value::DynValue) -> Result<Self, InferenceError> {
        let ort::value::ValueType::Tensor { ty, shape, .. } = value.dtype() else {
            return Err(InferenceError::UnsupportedType { dtype: value_type_name(value.dtype()) });
        };
        let dtype = ElementType::from_ort(*ty)?;
        let run_err = |e: ort::Error| InferenceError::Run { reason: e.to_string() };
        let shape = shape.to_vec();
        let tensor = value.view().downcast::<ort::value::DynTensorValueType>().map_err(run_err)?;
        if !tensor.memory_info().is_cpu_accessible() {
            return Err(InferenceError::Run { reason: format!("output tensor of {} is not in CPU memory", dtype.name()) });
        }
        let data = if dtype == ElementType::String {
            string_bytes(value)?
        } else {
            let count = shape.iter().try_fold(1usize, |n, d| n.checked_mul(usize::try_from(*d).ok()?)).unwrap_or(0);
            let len = dtype.byte_len(count).ok_or_else(|| InferenceError::Run { reason: "output too large".into() })?;
            let ptr = tensor.data_ptr().cast::<u8>();
            if len == 0 {
                Vec::new()
            } else if ptr.is_null() {
                return Err(InferenceError::Run { reason: "ONNX Runtime returned a tensor without data".into() });
            } else {
                // SAFETY: a CPU-accessible tensor of `count` elements of `dtype` holds
                // `dtype.byte_len(count)` bytes at its data pointer (ONNX Runtime's layout, the
                // one `byte_len` computes), alive as long as `value`, which we borrow.
                unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
            }
        };
        Ok(Self { dtype, shape, data })
    }
}

/// The elements of an ONNX Runtime string tensor in the wire encoding. Bytes that are not UTF-8
/// are replaced by U+FFFD (as onnxruntime-node does), so a model's output never fails here.
fn string_bytes(value: &ort::value::DynValue) -> Result<Vec<u8>, InferenceError> {
    use ort::AsPointer as _;
    let api = ort::api();
    let fail = |what: &str| InferenceError::Run { reason: format!("reading a string output: {what}") };
    let count = match value.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => shape.num_elements(),
        _ => return Err(fail("not a tensor")),
    };
    let ptr = value.ptr();
    let mut total = 0usize;
    // SAFETY: `ptr` is a live string tensor (checked by the caller); ONNX Runtime writes the
    // total byte length into `total`.
    let status = unsafe { (api.GetStringTensorDataLength)(ptr, &mut total) };
    // SAFETY: `status` was just returned by an ONNX Runtime API, and is consumed here.
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| fail(&e.to_string()))?;
    let mut bytes = vec![0u8; total];
    let mut offsets = vec![0usize; count];
    // SAFETY: `bytes` has room for `total` bytes and `offsets` for `count` offsets, the sizes
    // ONNX Runtime was told.
    let status = unsafe { (api.GetStringTensorContent)(ptr, bytes.as_mut_ptr().cast(), total, offsets.as_mut_ptr(), count) };
    // SAFETY: as above.
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| fail(&e.to_string()))?;
    let mut out = Vec::with_capacity(total + count * abi_type::STRING_LENGTH_BYTES);
    for i in 0..count {
        let (start, end) = (offsets[i], offsets.get(i + 1).copied().unwrap_or(total));
        let element = bytes.get(start..end).ok_or_else(|| fail("offsets out of range"))?;
        let text = String::from_utf8_lossy(element);
        out.extend_from_slice(&abi_type::string_header(text.len() as u32));
        out.extend_from_slice(text.as_bytes());
    }
    Ok(out)
}

/// `count` codes of `bits` bits each from packed `data` (the first in the lowest bits).
fn unpack_codes(data: &[u8], bits: usize, count: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    (0..count).map(|i| (data.get(i / per).copied().unwrap_or(0) >> ((i % per) * bits)) & mask).collect()
}

/// `codes` of `bits` bits packed, `8 / bits` per byte, the first in the lowest bits.
pub(crate) fn pack_codes(codes: &[u8], bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    codes.chunks(per).map(|c| c.iter().enumerate().fold(0u8, |b, (k, v)| b | ((v & mask) << (k * bits)))).collect()
}

/// Whether samples of `per_sample` elements of `dtype` do not each fill whole bytes (sub-byte
/// types with a count that does not): joining or splitting them repacks.
fn needs_repacking(dtype: ElementType, per_sample: usize) -> Option<usize> {
    dtype.bits().filter(|b| *b < 8 && !(per_sample * b).is_multiple_of(8))
}

/// Bytes that one sample of `count` elements of `dtype` takes at the start of `data` (for
/// `string`, by walking its elements); `None` if `data` is shorter.
pub(crate) fn sample_len(dtype: ElementType, data: &[u8], count: usize) -> Option<usize> {
    match dtype.byte_len(count) {
        Some(len) => (len <= data.len()).then_some(len),
        None if dtype == ElementType::String => {
            let mut rest = data;
            for _ in 0..count {
                rest = lockstep_abi::tensor_type::split_string(rest)?.1;
            }
            Some(data.len() - rest.len())
        }
        None => None,
    }
}

/// Whether one sample's bytes (`count` elements of `dtype`, exactly `sample_len` of them) are
/// valid elements: for `string`, UTF-8 without NUL; every fixed-width bit pattern is valid.
pub(crate) fn sample_is_valid(dtype: ElementType, data: &[u8], count: usize) -> bool {
    dtype != ElementType::String || decode_strings(data, count).is_ok()
}

/// The data of a batch made of `samples` (each `per_sample` elements of `dtype`, in the wire
/// encoding), in order: concatenated, or repacked for sub-byte samples that end mid-byte.
pub(crate) fn join_samples<'a>(dtype: ElementType, per_sample: usize, samples: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    match needs_repacking(dtype, per_sample) {
        Some(bits) => pack_codes(&samples.into_iter().flat_map(|s| unpack_codes(s, bits, per_sample)).collect::<Vec<_>>(), bits),
        None => samples.into_iter().flat_map(|s| s.iter().copied()).collect(),
    }
}

/// A batch's data split into its `n` samples of `per_sample` elements each; `None` if `data`
/// is not exactly that.
pub(crate) fn split_samples(dtype: ElementType, data: &[u8], n: usize, per_sample: usize) -> Option<Vec<Vec<u8>>> {
    if dtype == ElementType::String {
        let mut out = Vec::with_capacity(n);
        let mut rest = data;
        for _ in 0..n {
            let len = sample_len(dtype, rest, per_sample)?;
            out.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        return rest.is_empty().then_some(out);
    }
    if dtype.byte_len(per_sample.checked_mul(n)?)? != data.len() {
        return None;
    }
    Some(match needs_repacking(dtype, per_sample) {
        Some(bits) => unpack_codes(data, bits, n * per_sample).chunks(per_sample.max(1)).take(n).map(|c| pack_codes(c, bits)).collect(),
        None => {
            let per = dtype.byte_len(per_sample)?;
            (0..n).map(|k| data[k * per..(k + 1) * per].to_vec()).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_abi_ids_round_trip() {
        for t in ElementType::ALL {
            assert_eq!(ElementType::parse(t.name()).unwrap(), t);
            assert_eq!(ElementType::from_abi_id(t.abi_id()), Some(t));
            assert_eq!(ElementType::from_ort(t.to_ort()).unwrap(), t);
            assert_eq!(t.name(), t.name().to_lowercase());
        }
        assert_eq!(ElementType::parse("Float16").unwrap_err().code(), "E_UNSUPPORTED_TYPE");
        assert_eq!(ort_type_name(ort::value::TensorElementType::Complex64), "complex64");
        // Every id the ABI carries is an element type, and the other way round.
        assert_eq!(lockstep_abi::tensor_type::ALL.len(), ElementType::ALL.len());
    }

    #[test]
    fn the_unsupported_type_message_lists_every_type() {
        let message = InferenceError::UnsupportedType { dtype: "complex64".into() }.to_string();
        for t in ElementType::ALL {
            assert!(message.contains(&format!(" {},", t.name())) || message.ends_with(&format!(" {}", t.name())), "{message} lacks {}", t.name());
        }
    }

    #[test]
    fn sub_byte_samples_join_and_split_across_byte_boundaries() {
        // Three int4 samples of 3 elements: [1,2,3] [4,5,6] [7,8,9] → packed as one batch.
        let sample = |a: u8, b: u8, c: u8| pack_codes(&[a, b, c], 4);
        let samples = [sample(1, 2, 3), sample(4, 5, 6), sample(7, 8, 9)];
        let joined = join_samples(ElementType::I4, 3, samples.iter().map(|s| &s[..]));
        assert_eq!(joined, vec![0x21, 0x43, 0x65, 0x87, 0x09]);
        assert_eq!(split_samples(ElementType::I4, &joined, 3, 3).unwrap(), samples.to_vec());
        // Whole bytes: plain concatenation.
        assert_eq!(join_samples(ElementType::U2, 4, [&[0xE4u8][..], &[0x1B][..]]), vec![0xE4, 0x1B]);
        assert_eq!(split_samples(ElementType::U8, &[1, 2, 3], 2, 1), None, "not n samples");
    }

    #[test]
    fn string_samples_split_by_walking_elements() {
        let data = encode_strings(["a", "bc", "", "def"]);
        let parts = split_samples(ElementType::String, &data, 2, 2).unwrap();
        assert_eq!(parts, vec![encode_strings(["a", "bc"]), encode_strings(["", "def"])]);
        assert_eq!(sample_len(ElementType::String, &data, 2), Some(4 + 1 + 4 + 2));
        assert_eq!(split_samples(ElementType::String, &data, 1, 3), None, "bytes left over");
        let t = Tensor::from_strings(vec![2, 2], ["a", "bc", "", "def"]);
        assert_eq!(t.strings().unwrap(), vec!["a", "bc", "", "def"]);
        assert!(t.check_length("x").is_ok());
        let nul = Tensor::from_strings(vec![1], ["a\0b"]);
        assert_eq!(nul.check_length("x").unwrap_err().code(), "E_BAD_INPUT_VALUE");
        let short = Tensor { dtype: ElementType::String, shape: vec![2], data: encode_strings(["a"]) };
        assert_eq!(short.check_length("x").unwrap_err().code(), "E_BAD_INPUT_VALUE");
        let bad_utf8 = Tensor { dtype: ElementType::String, shape: vec![1], data: vec![1, 0, 0, 0, 0xFF] };
        assert!(bad_utf8.check_length("x").unwrap_err().to_string().contains("not UTF-8"));
    }

    #[test]
    fn sizes_follow_the_element_width() {
        assert_eq!(ElementType::F16.byte_len(3), Some(6));
        assert_eq!(ElementType::I4.byte_len(3), Some(2));
        assert_eq!(ElementType::U2.byte_len(5), Some(2));
        assert_eq!(ElementType::String.byte_len(1), None);
        let t = Tensor { dtype: ElementType::U4, shape: vec![3], data: vec![0, 0] };
        assert!(t.check_length("x").is_ok());
        let t = Tensor { dtype: ElementType::U4, shape: vec![3], data: vec![0, 0, 0] };
        assert_eq!(t.check_length("x").unwrap_err().code(), "E_BAD_INPUT_SHAPE");
    }
}
