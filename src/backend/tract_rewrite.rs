//! ONNX-level rewrites applied to a graph before tract optimizes it, where the exported form is right
//! for ONNX Runtime and TensorRT but leads tract to a slow plan.
//!
//! The one rewrite: the high-res stage attends to the low-res KV cache and its own keys, so each
//! layer's values are `Concat(cache_v, new_v)` along the key axis, multiplied by the softmaxed scores.
//! tract's `ConcatThenEinsum` pass splits any product whose summed axis comes from a concatenation
//! into one product per part plus an add, which means slicing the `[heads, K, 729 + K]` score matrix
//! into two copies every layer (for SO400M at K = 2560, 539 MB a layer) and packing each part. The
//! rewrite concatenates the values as flat rows instead (`[heads, keys * d]` along axis 1, then back
//! to `[heads, keys, d]`): the same values in the same layout, but the product's input is now a
//! reshape, so tract runs one product over all keys. No tract option turns that pass off (it is part
//! of tract's fixed declutter pass list), hence a rewrite of the graph.

use tract_onnx::pb;

/// ONNX `AttributeProto.AttributeType.INT`.
const ATTRIBUTE_INT: i32 = 2;
/// ONNX `TensorProto.DataType.INT64`.
const TENSOR_INT64: i32 = 7;

/// In `graph`, make every `Softmax -> MatMul <- Concat(axis = 1)` product over rank-3 values
/// `[heads, keys, head_dim]` concatenate flattened rows (see the module documentation). The
/// concatenation must feed only that product, and the graph's `kv_cache` input must have the
/// exporter's layout (so the values are rank 3). Returns how many products were rewritten; any
/// other graph is left as it is.
pub(super) fn flatten_value_concats(graph: &mut pb::GraphProto, head_dim: usize) -> usize {
    if !has_exporter_kv_layout(graph, head_dim) {
        return 0;
    }
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == name))
    };
    let consumers = |name: &str| {
        graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == name))
            .count()
    };
    let mut targets = Vec::new();
    for matmul in graph.node.iter().filter(|n| n.op_type == "MatMul") {
        let [scores, values] = matmul.input.as_slice() else {
            continue;
        };
        let from_softmax = producer(scores).is_some_and(|p| graph.node[p].op_type == "Softmax");
        let Some(concat) = producer(values) else {
            continue;
        };
        let node = &graph.node[concat];
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map(|a| a.i);
        if from_softmax
            && node.op_type == "Concat"
            && axis == Some(1)
            && node.output.len() == 1
            && consumers(values) == 1
            && !graph.output.iter().any(|o| &o.name == values)
        {
            targets.push(concat);
        }
    }
    if targets.is_empty() {
        return 0;
    }

    let flat = "ps3rt_flatten_rows";
    let unflat = "ps3rt_unflatten_rows";
    graph.initializer.push(int64_tensor(flat, &[0, -1]));
    graph
        .initializer
        .push(int64_tensor(unflat, &[0, -1, head_dim as i64]));
    // Replace from the back so the positions found above stay valid.
    targets.sort_unstable();
    for &at in targets.iter().rev() {
        let concat = graph.node.remove(at);
        let base = if concat.name.is_empty() {
            concat.output[0].clone()
        } else {
            concat.name.clone()
        };
        let mut nodes = Vec::with_capacity(concat.input.len() + 2);
        let mut flat_parts = Vec::with_capacity(concat.input.len());
        for (i, part) in concat.input.iter().enumerate() {
            let out = format!("{base}/ps3rt_flat_{i}");
            nodes.push(node(
                &format!("{base}/ps3rt_flatten_{i}"),
                "Reshape",
                &[part, flat],
                &out,
                None,
            ));
            flat_parts.push(out);
        }
        let joined = format!("{base}/ps3rt_rows");
        let parts: Vec<&str> = flat_parts.iter().map(String::as_str).collect();
        nodes.push(node(
            &format!("{base}/ps3rt_concat_rows"),
            "Concat",
            &parts,
            &joined,
            Some(("axis", 1)),
        ));
        nodes.push(node(
            &format!("{base}/ps3rt_unflatten"),
            "Reshape",
            &[&joined, unflat],
            &concat.output[0],
            None,
        ));
        graph.node.splice(at..at, nodes);
    }
    targets.len()
}

/// Whether the graph's `kv_cache` input has the layout ps3rt's exporter writes,
/// `[depth, 2, heads, tokens, head_dim]`, so each layer's cached values are `[heads, tokens,
/// head_dim]` and a concatenation on axis 1 is one along the keys.
fn has_exporter_kv_layout(graph: &pb::GraphProto, head_dim: usize) -> bool {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Type;
    let Some(input) = graph.input.iter().find(|i| i.name == "kv_cache") else {
        return false;
    };
    let dims = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Type::TensorType(t)) => t.shape.as_ref().map(|s| s.dim.as_slice()),
        _ => None,
    };
    let Some(dims) = dims else {
        return false;
    };
    dims.len() == 5
        && matches!(dims[1].value, Some(Dim::DimValue(2)))
        && matches!(dims[4].value, Some(Dim::DimValue(d)) if d == head_dim as i64)
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    output: &str,
    int_attr: Option<(&str, i64)>,
) -> pb::NodeProto {
    pb::NodeProto {
        name: name.to_string(),
        op_type: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute: int_attr
            .map(|(name, i)| pb::AttributeProto {
                name: name.to_string(),
                r#type: ATTRIBUTE_INT,
                i,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: vec![values.len() as i64],
        data_type: TENSOR_INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

#[cfg(all(test, feature = "embedded-model"))]
mod tests {
    use super::*;
    use crate::package::{GraphRole, Package};
    use tract_onnx::prelude::*;

    /// The embedded package's high-res graph, typed for K = 64, with or without the rewrite.
    fn hrenc(rewrite: bool) -> (Arc<TypedRunnableModel>, usize) {
        let package = Package::embedded().unwrap();
        let m = &package.manifest().model;
        let g = package.geometry();
        let mut proto = package.graph_proto(GraphRole::HrEnc).unwrap();
        let rewritten = if rewrite {
            flatten_value_concats(proto.graph.as_mut().unwrap(), m.head_dim)
        } else {
            0
        };
        let mut model = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
        let kv = [m.depth, 2, m.heads, g.lowres_tokens(), m.head_dim];
        model
            .set_input_fact(0, f32::fact([64, 3 * g.patch() * g.patch()]).into())
            .unwrap();
        model
            .set_input_fact(1, f32::fact([64, m.width]).into())
            .unwrap();
        model.set_input_fact(2, f32::fact(kv).into()).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        (plan, rewritten)
    }

    fn pseudo_random(shape: &[usize], seed: u64) -> TValue {
        let n: usize = shape.iter().product();
        let mut x = seed;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        tract_ndarray::ArrayD::from_shape_vec(shape, data)
            .unwrap()
            .into_tvalue()
    }

    #[test]
    fn the_rewrite_keeps_the_high_res_features_and_removes_the_split() {
        let package = Package::embedded().unwrap();
        let m = &package.manifest().model;
        let g = package.geometry();
        let (plain, none) = hrenc(false);
        let (rewritten, count) = hrenc(true);
        assert_eq!(none, 0);
        assert_eq!(count, m.depth, "one value concatenation per layer");
        // tract split every layer's product in the plain plan, and none in the rewritten one.
        let split = |plan: &Arc<TypedRunnableModel>| {
            plan.model()
                .nodes()
                .iter()
                .filter(|n| n.name.contains("concat-einsum"))
                .count()
        };
        assert!(split(&plain) > 0);
        assert_eq!(split(&rewritten), 0);
        let inputs = tvec![
            pseudo_random(&[64, 3 * g.patch() * g.patch()], 1),
            pseudo_random(&[64, m.width], 2),
            pseudo_random(&[m.depth, 2, m.heads, g.lowres_tokens(), m.head_dim], 3),
        ];
        let a = plain.run(inputs.clone()).unwrap();
        let b = rewritten.run(inputs).unwrap();
        let values = |v: &TValue| -> Vec<f32> {
            let t: &Tensor = v;
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        let (a, b) = (values(&a[0]), values(&b[0]));
        assert_eq!(a.len(), b.len());
        // One product over all keys instead of two added: the same sums in another order.
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "features differ by {worst}");
    }

    #[test]
    fn a_graph_without_the_pattern_or_the_layout_is_left_alone() {
        let package = Package::embedded().unwrap();
        let head_dim = package.manifest().model.head_dim;
        let mut proto = package.graph_proto(GraphRole::LowRes).unwrap();
        let before = proto.clone();
        assert_eq!(
            flatten_value_concats(proto.graph.as_mut().unwrap(), head_dim),
            0
        );
        assert_eq!(proto, before);
        // The high-res graph with a head width its KV cache does not have: not the exporter's
        // layout as far as the rewrite can tell, so untouched.
        let mut proto = package.graph_proto(GraphRole::HrEnc).unwrap();
        let before = proto.clone();
        assert_eq!(
            flatten_value_concats(proto.graph.as_mut().unwrap(), head_dim + 1),
            0
        );
        assert_eq!(proto, before);
    }
}
