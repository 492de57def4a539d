//! `route`: named outputs chosen by VRL conditions.
//!
//! `route: { name: condition, … }` gives outputs `<id>.<name>`; an event goes to every
//! route whose condition is true (copied when more than one), and to `<id>._unmatched`
//! when none is.

use indexmap::IndexMap;
use serde::Deserialize;
use vrl::value::Value;

use crate::component::{
    BuildError, Transform, TransformConfig, TransformContext, TransformOutputs,
};
use crate::event::EventBatch;
use crate::event::fields::{self, Reads};
use crate::program::{self, Mode, Outcome, ProgramSource, Runner};

pub(crate) const UNMATCHED: &str = "_unmatched";

/// Sends each event to the named outputs whose VRL condition holds (`_unmatched` when none does).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteConfig {
    /// Output name → VRL condition: an event goes to `<id>.<name>` for every condition
    /// that is true, and to `<id>._unmatched` when none is. At least one.
    pub(crate) route: IndexMap<String, String>,
}

impl TransformConfig for RouteConfig {
    fn type_name(&self) -> &'static str {
        "route"
    }

    fn outputs(&self) -> Vec<String> {
        self.route
            .keys()
            .cloned()
            .chain([UNMATCHED.to_owned()])
            .collect()
    }

    fn build(&self, _cx: &TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        if self.route.is_empty() {
            return Err(BuildError(
                "`route` needs at least one named condition".into(),
            ));
        }
        let mut routes = Vec::with_capacity(self.route.len());
        for (name, condition) in &self.route {
            if name == UNMATCHED || name.contains('.') {
                return Err(BuildError(format!(
                    "route name `{name}` is reserved or contains `.`"
                )));
            }
            let program =
                program::compile(&ProgramSource::Inline(condition.clone()), Mode::Condition)
                    .map_err(|e| BuildError(format!("route `{name}`: {}", e.0)))?;
            routes.push(Runner::new(program));
        }
        let reads = Reads::union(routes.iter().filter_map(Runner::reads));
        Ok(Box::new(Route { routes, reads }))
    }
}

struct Route {
    routes: Vec<Runner>,
    /// What any condition reads: picked from an event's text once for all of them.
    reads: Reads,
}

impl Transform for Route {
    fn process(&mut self, batch: EventBatch, out: &mut TransformOutputs) {
        let unmatched = self.routes.len();
        let mut hits = Vec::with_capacity(self.routes.len());
        // A condition that read outside its fields now reads the whole payload.
        if self.routes.iter().any(|r| r.reads() == Some(&Reads::Whole)) {
            self.reads = Reads::Whole;
        }
        for mut event in batch {
            hits.clear();
            let picked = fields::pick_from(&self.reads, &mut event);
            for (i, runner) in self.routes.iter_mut().enumerate() {
                if matches!(
                    runner.run_read(&event, picked.as_ref()),
                    Outcome::Done(Value::Boolean(true))
                ) {
                    hits.push(i);
                }
            }
            match hits.split_last() {
                None => out.named[unmatched].push(event),
                Some((&last, rest)) => {
                    for &i in rest {
                        out.named[i].push(event.clone());
                    }
                    out.named[last].push(event);
                }
            }
        }
    }
}
