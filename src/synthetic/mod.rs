//! Synthetic frames for tests, benchmarks and demos.
mod road;
pub use road::{ObjectKind, RoadScene, SceneObject, road_scene};
