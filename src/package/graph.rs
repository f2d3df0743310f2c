//! Decoding a package graph: the ONNX protobuf with its external weights resolved from the package's
//! shared weights file (bounds and sizes checked), and its interface checked against the manifest.

use std::ops::Range;

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::prelude::Framework;

use super::Package;
use super::manifest::{Dim, GraphSpec, TensorSpec, shape_string};
use crate::error::{Error, Result};

/// The three graph roles of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphRole {
    /// 378 px trunk: hidden states, KV cache, selection features.
    LowRes,
    /// 1512 px selection branch.
    HrSel,
    /// High-res encoder over the selected patches.
    HrEnc,
}

impl GraphRole {
    /// All roles, in pipeline order.
    pub const ALL: [GraphRole; 3] = [GraphRole::LowRes, GraphRole::HrSel, GraphRole::HrEnc];

    /// Name used in the manifest and in messages.
    pub fn name(self) -> &'static str {
        match self {
            GraphRole::LowRes => "lowres",
            GraphRole::HrSel => "hrsel",
            GraphRole::HrEnc => "hrenc",
        }
    }
}

/// The optional graphs of a package (format 1 packages may lack them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionalGraph {
    /// The region pool head (attention pool with a key mask per region).
    Pool,
    /// The text tower (token ids to text embedding and selection prompt).
    Text,
}

impl OptionalGraph {
    /// Name used in the manifest and in messages.
    pub fn name(self) -> &'static str {
        match self {
            OptionalGraph::Pool => "pool",
            OptionalGraph::Text => "text",
        }
    }

    fn what(self) -> &'static str {
        match self {
            OptionalGraph::Pool => "the region pool head, needed for region embeddings and labels",
            OptionalGraph::Text => "the text tower, needed for free-text prompts",
        }
    }

    fn export_flag(self) -> &'static str {
        match self {
            OptionalGraph::Pool => "",
            OptionalGraph::Text => " --text-tower",
        }
    }
}

impl Package {
    /// The manifest's description of a graph.
    pub fn graph_spec(&self, role: GraphRole) -> &GraphSpec {
        let g = &self.manifest.graphs;
        match role {
            GraphRole::LowRes => &g.lowres,
            GraphRole::HrSel => &g.hrsel,
            GraphRole::HrEnc => &g.hrenc,
        }
    }

    /// The graph's ONNX model with every external initializer filled in from the weights file.
    pub fn graph_proto(&self, role: GraphRole) -> Result<pb::ModelProto> {
        self.resolve_graph(self.graph_spec(role))
    }

    /// The manifest's description of an optional graph, None when the package has none.
    pub fn optional_graph_spec(&self, graph: OptionalGraph) -> Option<&GraphSpec> {
        let g = &self.manifest.graphs;
        match graph {
            OptionalGraph::Pool => g.pool.as_ref(),
            OptionalGraph::Text => g.text.as_ref(),
        }
    }

    /// An optional graph's ONNX model with its external initializers filled in; an error naming the
    /// missing manifest entry when the package has no such graph.
    pub fn optional_graph_proto(&self, graph: OptionalGraph) -> Result<pb::ModelProto> {
        let spec = self.optional_graph_spec(graph).ok_or_else(|| {
            Error::package(
                &self.origin,
                super::MANIFEST_FILE,
                format!(
                    "no graphs.{} ({}); re-export the package with tools/export/ps3_export.py{}",
                    graph.name(),
                    graph.what(),
                    graph.export_flag()
                ),
            )
        })?;
        self.resolve_graph(spec)
    }

    /// Decode `spec`'s ONNX file and fill its external initializers from its weights file (the
    /// package's `weights` unless the graph names its own), checking ranges and the interface.
    fn resolve_graph(&self, spec: &GraphSpec) -> Result<pb::ModelProto> {
        let (mut proto, ranges, weights_name) = self.decode_graph(spec)?;
        let weights = self.file(weights_name)?;
        if let Some(graph) = proto.graph.as_mut() {
            for (index, range) in ranges {
                let init = &mut graph.initializer[index];
                init.raw_data = weights[range].to_vec();
                init.external_data.clear();
                init.data_location = Some(DataLocation::Default as i32);
            }
        }
        // The proto holds its own copy of the weights it uses: the mapped file's pages it was
        // copied from leave the resident set before a backend builds its tensors from it.
        self.release_pages();
        Ok(proto)
    }

    /// The initializers of `spec`'s graph whose data lie in its weights file, checked as
    /// [`Package::graph_proto`] checks them, without copying the data: what a backend that reads
    /// the weights in place (ONNX Runtime) shares between its sessions.
    #[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
    pub(crate) fn external_initializers(
        &self,
        spec: &GraphSpec,
    ) -> Result<Vec<ExternalInitializer>> {
        let (proto, ranges, _) = self.decode_graph(spec)?;
        let graph = proto.graph.unwrap_or_default();
        Ok(ranges
            .into_iter()
            .map(|(index, range)| {
                let init = &graph.initializer[index];
                ExternalInitializer {
                    name: init.name.clone(),
                    data_type: init.data_type,
                    dims: init.dims.clone(),
                    range,
                }
            })
            .collect())
    }

    /// Decode `spec`'s ONNX file, check its interface and the external-data reference of every
    /// initializer (only the graph's weights file, each range inside it and of the size its type
    /// and shape need). Returns the model, each external initializer's index and byte range in
    /// the weights file, and that file's name.
    fn decode_graph<'s>(
        &'s self,
        spec: &'s GraphSpec,
    ) -> Result<(pb::ModelProto, ExternalRanges, &'s str)> {
        let file = spec.file.as_str();
        let err = |reason: String| Error::package(&self.origin, file, reason);
        let mut bytes = self.file(file)?;
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut bytes)
            .map_err(|e| err(format!("not a valid ONNX model: {e}")))?;
        let weights_name = spec
            .weights
            .as_deref()
            .unwrap_or(self.manifest.weights.file.as_str());
        let weights_len = self.file(weights_name)?.len();
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| err("ONNX model without a graph".into()))?;
        let mut ranges = Vec::new();
        for (index, init) in graph.initializer.iter().enumerate() {
            if init.data_location != Some(DataLocation::External as i32) {
                continue;
            }
            let mut location = None;
            let mut offset = 0usize;
            let mut length = None;
            for kv in &init.external_data {
                match kv.key.as_str() {
                    "location" => location = Some(kv.value.clone()),
                    "offset" => {
                        offset = kv
                            .value
                            .parse()
                            .map_err(|_| err(format!("{}: bad external offset", init.name)))?
                    }
                    "length" => {
                        length = Some(
                            kv.value
                                .parse::<usize>()
                                .map_err(|_| err(format!("{}: bad external length", init.name)))?,
                        )
                    }
                    _ => {}
                }
            }
            if location.as_deref() != Some(weights_name) {
                return Err(err(format!(
                    "initializer {} refers to external file {:?}; only the package's {weights_name} is allowed",
                    init.name, location
                )));
            }
            let expected = initializer_bytes(init).ok_or_else(|| {
                err(format!(
                    "initializer {}: unsupported type or shape",
                    init.name
                ))
            })?;
            let length = length.unwrap_or(expected);
            if length != expected {
                return Err(err(format!(
                    "initializer {}: external length {length}, its shape needs {expected}",
                    init.name
                )));
            }
            let end = offset
                .checked_add(length)
                .filter(|&e| e <= weights_len)
                .ok_or_else(|| err(format!("initializer {}: range {offset}+{length} is outside {weights_name} ({weights_len} bytes)", init.name)))?;
            ranges.push((index, offset..end));
        }
        check_interface(graph, spec).map_err(err)?;
        Ok((proto, ranges, weights_name))
    }
}

/// Each external initializer's index in its graph and byte range in the weights file.
type ExternalRanges = Vec<(usize, Range<usize>)>;

/// An initializer whose data lie in the package's weights file.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
pub(crate) struct ExternalInitializer {
    /// Its name in the graph.
    pub name: String,
    /// ONNX `TensorProto.DataType`.
    pub data_type: i32,
    /// Its shape.
    pub dims: Vec<i64>,
    /// Its bytes in the weights file.
    pub range: Range<usize>,
}

/// Bytes an initializer's dims and type call for.
fn initializer_bytes(t: &pb::TensorProto) -> Option<usize> {
    let elem = match DataType::try_from(t.data_type).ok()? {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16 => 2,
        DataType::Double | DataType::Int64 | DataType::Uint64 => 8,
        DataType::Int8 | DataType::Uint8 | DataType::Bool => 1,
        _ => return None,
    };
    t.dims.iter().try_fold(elem, |acc: usize, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// The graph's real inputs (not initializers) and outputs must be the manifest's, name by name and
/// dimension by dimension.
fn check_interface(graph: &pb::GraphProto, spec: &GraphSpec) -> Result<(), String> {
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|i| i.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_str()))
        .collect();
    let outputs: Vec<&pb::ValueInfoProto> = graph.output.iter().collect();
    for (kind, actual, expected) in [
        ("input", &inputs, &spec.inputs),
        ("output", &outputs, &spec.outputs),
    ] {
        if actual.len() != expected.len() {
            return Err(format!(
                "graph has {} {kind}s, the manifest lists {}",
                actual.len(),
                expected.len()
            ));
        }
        for (a, e) in actual.iter().zip(expected.iter()) {
            let shape =
                value_shape(a).ok_or_else(|| format!("{kind} {} has no tensor type", a.name))?;
            let got = TensorSpec {
                name: a.name.clone(),
                dtype: "float32".into(),
                shape: shape.clone(),
            };
            let want = match e.dtype.as_str() {
                "int64" => DataType::Int64,
                _ => DataType::Float,
            };
            if a.name != e.name || shape != e.shape || elem_type(a) != Some(want as i32) {
                return Err(format!(
                    "{kind} {} {} differs from the manifest's {} {} ({})",
                    got.name,
                    shape_string(&got.shape),
                    e.name,
                    shape_string(&e.shape),
                    e.dtype
                ));
            }
        }
    }
    Ok(())
}

fn elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

fn value_shape(v: &pb::ValueInfoProto) -> Option<Vec<Dim>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    let dims = t.shape.as_ref()?.dim.iter().map(|d| match &d.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => Dim::Fixed(*n as usize),
        Some(pb::tensor_shape_proto::dimension::Value::DimParam(s)) => Dim::Named(s.clone()),
        None => Dim::Named("?".into()),
    });
    Some(dims.collect())
}
