//! Where a package's graphs spend their time on tract, op by op.
//!
//!     cargo run --release --example profile_ops -- [PKG] [--graph lowres|hrsel|hrenc]
//!         [--budget K] [--runs N] [--threads T] [--top N] [--as-exported]
//!
//! Builds the graph exactly as ps3rt's tract backend does (its ONNX rewrites applied, unless
//! `--as-exported`; same input facts, the high-res budget kept symbolic, optimized, run on a pool of
//! T threads), runs it once to warm up, then N times with
//! every node's evaluation timed, and prints the time per op kind and the slowest nodes with their
//! output shapes. Inputs are zeros: these graphs do the same work whatever the values. Without PKG
//! the embedded tiny package is used. docs/performance.md (finding 11) was measured with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ps3rt::Package;
use ps3rt::package::GraphRole;
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::eval;
use tract_onnx::tract_core::runtime::RunOptions;

struct Args {
    package: Option<String>,
    graph: GraphRole,
    budget: Option<usize>,
    runs: usize,
    threads: usize,
    top: usize,
    as_exported: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        package: None,
        graph: GraphRole::HrEnc,
        budget: None,
        runs: 2,
        threads: 2,
        top: 15,
        as_exported: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{name} {v:?}: not a whole number"))
        };
        match arg.as_str() {
            "--graph" => {
                args.graph = match value("--graph")?.as_str() {
                    "lowres" => GraphRole::LowRes,
                    "hrsel" => GraphRole::HrSel,
                    "hrenc" => GraphRole::HrEnc,
                    other => return Err(format!("--graph {other:?}: use lowres, hrsel or hrenc")),
                }
            }
            "--budget" => args.budget = Some(number("--budget", value("--budget")?)?),
            "--runs" => args.runs = number("--runs", value("--runs")?)?.max(1),
            "--threads" => args.threads = number("--threads", value("--threads")?)?.max(1),
            "--top" => args.top = number("--top", value("--top")?)?,
            "--as-exported" => args.as_exported = true,
            "-h" | "--help" => {
                return Err(
                    "usage: profile_ops [PKG] [--graph lowres|hrsel|hrenc] [--budget K] \
                            [--runs N] [--threads T] [--top N] [--as-exported]"
                        .into(),
                );
            }
            path if !path.starts_with('-') && args.package.is_none() => {
                args.package = Some(path.to_string())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let package = match &args.package {
        Some(dir) => Package::open(dir)?,
        None => Package::embedded()?,
    };
    let g = package.geometry();
    let m = &package.manifest().model;
    let budget = args.budget.unwrap_or(package.manifest().geometry.budget);

    // The graph as the tract backend builds it (src/backend/tract.rs).
    let proto = if args.as_exported {
        package.graph_proto(args.graph)?
    } else {
        ps3rt::backend::tract::graph_for_tract(&package, args.graph)?
    };
    let mut model = tract_onnx::onnx().model_for_proto_model(&proto)?;
    let zeros = |shape: &[usize]| Tensor::zero::<f32>(shape).map(|t| t.into_tvalue());
    let inputs: TVec<TValue> = match args.graph {
        GraphRole::LowRes => {
            let shape = [1, 3, g.lowres_size(), g.lowres_size()];
            model.set_input_fact(0, f32::fact(shape).into())?;
            tvec![zeros(&shape)?]
        }
        GraphRole::HrSel => {
            let shape = [1, 3, g.hrsel_input(), g.hrsel_input()];
            model.set_input_fact(0, f32::fact(shape).into())?;
            tvec![zeros(&shape)?]
        }
        GraphRole::HrEnc => {
            let k = model.symbols.sym("K");
            let values = 3 * g.patch() * g.patch();
            let kv = [m.depth, 2, m.heads, g.lowres_tokens(), m.head_dim];
            model.set_input_fact(0, f32::fact(&[k.to_dim(), values.to_dim()]).into())?;
            model.set_input_fact(1, f32::fact(&[k.to_dim(), m.width.to_dim()]).into())?;
            model.set_input_fact(2, f32::fact(kv).into())?;
            tvec![
                zeros(&[budget, values])?,
                zeros(&[budget, m.width])?,
                zeros(&kv)?
            ]
        }
    };
    let executor = if args.threads > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build()?;
        Executor::MultiThread(Arc::new(pool))
    } else {
        Executor::SingleThread
    };
    let options = RunOptions {
        executor: Some(executor),
        ..RunOptions::default()
    };
    let plan = model
        .into_optimized()?
        .into_runnable_with_options(&options)?;
    let mut state = TypedSimpleState::new(&plan)?;

    let t = Instant::now();
    state.run(inputs.clone())?;
    println!(
        "{}: {:?} graph{}, K = {budget}, {} threads; warm-up run {:.1} ms",
        package.manifest().name,
        args.graph,
        if args.as_exported {
            " as exported"
        } else {
            " as ps3rt runs it"
        },
        args.threads,
        t.elapsed().as_secs_f64() * 1e3
    );

    let model = plan.model();
    let mut per_node = vec![Duration::ZERO; model.nodes().len()];
    let t = Instant::now();
    for _ in 0..args.runs {
        state.run_plan_with_eval(inputs.clone(), |ctx, op_state, node, node_inputs| {
            let t = Instant::now();
            let out = eval(ctx, op_state, node, node_inputs);
            per_node[node.id] += t.elapsed();
            out
        })?;
    }
    let wall = t.elapsed() / args.runs as u32;
    let per_run = |d: Duration| d.as_secs_f64() * 1e3 / args.runs as f64;
    let timed: Duration = per_node.iter().sum();

    let mut per_op: HashMap<String, (Duration, usize)> = HashMap::new();
    for node in model.nodes() {
        let e = per_op.entry(node.op().name().to_string()).or_default();
        e.0 += per_node[node.id];
        e.1 += 1;
    }
    let mut per_op: Vec<_> = per_op.into_iter().collect();
    per_op.sort_by_key(|(_, (d, _))| std::cmp::Reverse(*d));
    println!(
        "per run: {:.1} ms wall, {:.1} ms inside ops ({} nodes)\n",
        wall.as_secs_f64() * 1e3,
        per_run(timed),
        model.nodes().len()
    );
    println!(
        "{:<28} {:>6} {:>11} {:>7}",
        "op", "nodes", "ms/run", "share"
    );
    for (op, (d, n)) in &per_op {
        if d.is_zero() {
            continue;
        }
        println!(
            "{op:<28} {n:>6} {:>11.2} {:>6.1}%",
            per_run(*d),
            100.0 * d.as_secs_f64() / timed.as_secs_f64().max(1e-12)
        );
    }

    let mut slowest: Vec<usize> = (0..per_node.len()).collect();
    slowest.sort_by_key(|&id| std::cmp::Reverse(per_node[id]));
    println!("\nslowest nodes:");
    for &id in slowest.iter().take(args.top) {
        let node = &model.nodes()[id];
        let shape = node
            .outputs
            .first()
            .map(|o| format!("{:?}", o.fact.shape))
            .unwrap_or_default();
        println!(
            "{:>9.2} ms  {:<20} {:<40} -> {shape}",
            per_run(per_node[id]),
            node.op().name(),
            node.name
        );
    }
    Ok(())
}
