//! Folds the dequantization of constant weights into float initializers before tract sees the
//! graph.
//!
//! A QDQ export stores each convolution's weights as int8 (and its bias as int32) behind a
//! `DequantizeLinear` with one scale per output channel. tract turns a per-axis
//! `DequantizeLinear` into a Cast → Sub → Mul chain and evaluates it through its generic
//! broadcasting analyser when the model is typed: about 0.4 s for EfficientNet-Lite0's 4 M
//! weights on a fast x86 core, several seconds on a Pi. The result is the same float tensor
//! either way, so computing it here, in one pass over each weight, gives tract an equivalent
//! graph to load in a few milliseconds. Anything this module does not understand (external
//! data, other element types, blocked quantization) is left in the graph for tract.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, NodeProto, TensorProto, attribute_proto, tensor_proto};

use super::proto::{floats, integers};

/// Replaces every `DequantizeLinear` whose inputs are all initializers by a float initializer of
/// the same name as its output, and drops the initializers nothing reads any more. Returns how
/// many nodes it folded.
pub(super) fn fold_constant_dequantization(graph: &mut GraphProto) -> usize {
    let index: HashMap<&str, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(ix, t)| (t.name.as_str(), ix))
        .collect();
    let mut folded_tensors = Vec::new();
    let mut folded_nodes = HashSet::new();
    for (ix, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear" || !node.domain.is_empty() {
            continue;
        }
        let inputs: Option<Vec<&TensorProto>> = node
            .input
            .iter()
            .map(|name| index.get(name.as_str()).map(|&i| &graph.initializer[i]))
            .collect();
        let Some(inputs) = inputs else { continue };
        if let Some(mut tensor) = dequantize(node, &inputs) {
            tensor.name = node.output[0].clone();
            folded_tensors.push(tensor);
            folded_nodes.insert(ix);
        }
    }
    let folded = folded_nodes.len();
    if folded == 0 {
        return 0;
    }
    let mut ix = 0;
    graph.node.retain(|_| {
        ix += 1;
        !folded_nodes.contains(&(ix - 1))
    });
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| read.contains(&t.name));
    graph.initializer.extend(folded_tensors);
    folded
}

/// `(x - zero_point) * scale` as a float tensor, per tensor or along the node's `axis`.
fn dequantize(node: &NodeProto, inputs: &[&TensorProto]) -> Option<TensorProto> {
    let (x, scale) = (inputs.first()?, inputs.get(1)?);
    let mut axis = 1;
    for attribute in &node.attribute {
        match attribute.name.as_str() {
            "axis" if attribute.r#type == attribute_proto::AttributeType::Int as i32 => {
                axis = attribute.i
            }
            "block_size" if attribute.i == 0 => {}
            _ => return None,
        }
    }
    let values = integers(x)?;
    let scale = floats(scale)?;
    let zero_point = match inputs.get(2) {
        Some(zero_point) => integers(zero_point)?,
        None => vec![0; scale.len()],
    };
    if zero_point.len() != scale.len() || scale.is_empty() {
        return None;
    }
    let dims: Vec<usize> = x
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    if dims.iter().product::<usize>() != values.len() {
        return None;
    }
    // Per tensor, one parameter for every value; per axis, a run of `inner` values shares one.
    let (outer, channels, inner) = if scale.len() == 1 {
        (1, 1, values.len())
    } else {
        let axis = usize::try_from(if axis < 0 {
            axis + dims.len() as i64
        } else {
            axis
        })
        .ok()
        .filter(|&a| a < dims.len())?;
        if dims[axis] != scale.len() {
            return None;
        }
        let inner = dims[axis + 1..].iter().product::<usize>();
        (
            values.len() / (dims[axis] * inner).max(1),
            dims[axis],
            inner,
        )
    };
    // Written as raw little-endian bytes, which tract copies in one piece.
    let mut raw_data = Vec::with_capacity(values.len() * 4);
    for o in 0..outer {
        for c in 0..channels {
            let (s, z) = (scale[c], i64::from(zero_point[c]));
            let start = (o * channels + c) * inner;
            for &v in &values[start..start + inner] {
                raw_data.extend_from_slice(&((i64::from(v) - z) as f32 * s).to_le_bytes());
            }
        }
    }
    Some(TensorProto {
        dims: x.dims.clone(),
        data_type: tensor_proto::DataType::Float as i32,
        raw_data,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{
        AttributeProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto, tensor_shape_proto, type_proto,
    };
    use tract_onnx::prelude::*;

    fn value_info(name: &str, shape: &[i64]) -> ValueInfoProto {
        let dim = |value: i64| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(value)),
            ..Default::default()
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: tensor_proto::DataType::Float as i32,
                    shape: Some(TensorShapeProto {
                        dim: shape.iter().map(|&d| dim(d)).collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tensor(
        name: &str,
        data_type: tensor_proto::DataType,
        dims: &[i64],
        raw: Vec<u8>,
    ) -> TensorProto {
        TensorProto {
            name: name.into(),
            data_type: data_type as i32,
            dims: dims.to_vec(),
            raw_data: raw,
            ..Default::default()
        }
    }

    fn dequantize_node(input: &str, axis: Option<i64>) -> NodeProto {
        NodeProto {
            op_type: "DequantizeLinear".into(),
            input: vec![
                input.into(),
                format!("{input}_scale"),
                format!("{input}_zero"),
            ],
            output: vec![format!("{input}_float")],
            attribute: axis
                .map(|axis| AttributeProto {
                    name: "axis".into(),
                    r#type: attribute_proto::AttributeType::Int as i32,
                    i: axis,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// x [1, 2, 3, 3] -> Conv(DQ(int8 weights, per output channel), DQ(int32 bias)) -> y.
    fn conv_model() -> ModelProto {
        use tensor_proto::DataType::{Float, Int8, Int32};
        let floats = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let weights: Vec<u8> = [-128i8, 127, 3, -7, 0, 55]
            .iter()
            .map(|&v| v as u8)
            .collect();
        let bias: Vec<u8> = [1000i32, -70000, 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let graph = GraphProto {
            node: vec![
                dequantize_node("w", Some(0)),
                dequantize_node("b", Some(0)),
                NodeProto {
                    op_type: "Conv".into(),
                    input: vec!["x".into(), "w_float".into(), "b_float".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                },
            ],
            initializer: vec![
                tensor("w", Int8, &[3, 2, 1, 1], weights),
                tensor("w_scale", Float, &[3], floats(&[0.5, 0.01, 2.0])),
                tensor("w_zero", Int8, &[3], vec![0, 2, 255]),
                tensor("b", Int32, &[3], bias),
                tensor("b_scale", Float, &[3], floats(&[0.25, 0.001, 1.5])),
                tensor("b_zero", Int32, &[3], vec![0; 12]),
            ],
            input: vec![value_info("x", &[1, 2, 3, 3])],
            output: vec![value_info("y", &[1, 3, 3, 3])],
            ..Default::default()
        };
        ModelProto {
            ir_version: 9,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 18,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn run(model: &ModelProto) -> Vec<f32> {
        let input: Vec<f32> = (0..18).map(|i| i as f32 * 0.37 - 3.0).collect();
        let plan = tract_onnx::onnx()
            .model_for_proto_model(model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let input = Tensor::from_shape(&[1, 2, 3, 3], &input).unwrap();
        let output = plan.run(tvec!(input.into())).unwrap();
        output[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn folding_keeps_the_convolution_result() {
        let original = conv_model();
        let mut folded = original.clone();
        let graph = folded.graph.as_mut().unwrap();
        assert_eq!(fold_constant_dequantization(graph), 2);
        assert_eq!(graph.node.len(), 1, "only the Conv is left");
        let mut names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["b_float", "w_float"],
            "the int8 originals are dropped"
        );
        assert_eq!(run(&original), run(&folded));
    }

    #[test]
    fn a_dequantization_of_an_activation_stays() {
        let mut model = conv_model();
        let graph = model.graph.as_mut().unwrap();
        graph.initializer.retain(|t| t.name != "w");
        graph.input.push(value_info("w", &[3, 2, 1, 1]));
        assert_eq!(fold_constant_dequantization(graph), 1, "only the bias");
        assert!(graph.node.iter().any(|n| n.input[0] == "w"));
    }
}
