//! Reading the values of ONNX initializers and attributes without tract, for the load-time
//! rewrite of [`super::fold`] and the int8 executor's reading of a QDQ graph.

use tract_onnx::pb::{NodeProto, TensorProto, attribute_proto, tensor_proto};

fn in_memory(t: &TensorProto) -> bool {
    t.data_location != Some(tensor_proto::DataLocation::External as i32) && t.segment.is_none()
}

/// The values of an int8, uint8 or int32 tensor.
pub(super) fn integers(t: &TensorProto) -> Option<Vec<i32>> {
    use tensor_proto::DataType;
    if !in_memory(t) {
        return None;
    }
    let data_type = DataType::try_from(t.data_type).ok()?;
    if !t.raw_data.is_empty() {
        let raw = &t.raw_data;
        return match data_type {
            DataType::Int8 => Some(raw.iter().map(|&b| i32::from(b as i8)).collect()),
            DataType::Uint8 => Some(raw.iter().map(|&b| i32::from(b)).collect()),
            DataType::Int32 if raw.len().is_multiple_of(4) => Some(
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            _ => None,
        };
    }
    match data_type {
        DataType::Int8 | DataType::Uint8 | DataType::Int32 => Some(t.int32_data.clone()),
        _ => None,
    }
}

pub(super) fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if !in_memory(t) || t.data_type != tensor_proto::DataType::Float as i32 {
        return None;
    }
    if t.raw_data.is_empty() {
        return Some(t.float_data.clone());
    }
    t.raw_data.len().is_multiple_of(4).then(|| {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}
/// An integer attribute of `node`, if it has one of that name.
pub(super) fn int_attribute(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == attribute_proto::AttributeType::Int as i32)
        .map(|a| a.i)
}

/// An integer-list attribute of `node`, if it has one of that name.
pub(super) fn ints_attribute(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == attribute_proto::AttributeType::Ints as i32)
        .map(|a| a.ints.clone())
}

/// A string attribute of `node`, if it has one of that name.
pub(super) fn string_attribute(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == attribute_proto::AttributeType::String as i32)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// An int64 tensor's values (axes, shapes).
pub(super) fn int64s(t: &TensorProto) -> Option<Vec<i64>> {
    if !in_memory(t) || t.data_type != tensor_proto::DataType::Int64 as i32 {
        return None;
    }
    if t.raw_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    t.raw_data.len().is_multiple_of(8).then(|| {
        t.raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    })
}
