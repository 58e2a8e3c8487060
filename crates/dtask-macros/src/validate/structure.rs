//! The shape of the saga: groups and orders (who runs with whom, and when),
//! the settings attached to steps, and the single hand-off from the Api
//! host to the Worker host.

use std::collections::HashMap;

use syn::{Attribute, Expr};

use super::scope::{Scope, kind_name};
use crate::errors::Errors;
use crate::model::{Host, RetryArgs, Setting, StepKind};

/// What the settings say about one step.
#[derive(Default)]
pub(crate) struct Settings<'a> {
    pub(crate) placement: Option<(Host, &'a Attribute)>,
    pub(crate) retry: Option<&'a RetryArgs>,
    pub(crate) condition: Option<&'a Expr>,
    pub(crate) compensation: bool,
}

impl Settings<'_> {
    pub(crate) fn host(&self) -> Host {
        self.placement.map_or(Host::Worker, |(host, _)| host)
    }
}

/// Resolves each step's `group = X` to a group's declaration index,
/// checking that members share their group's order and that every group
/// has members.
pub(crate) fn groups(scope: &Scope<'_>, errors: &mut Errors) -> Vec<Option<usize>> {
    let declaration = scope.declaration;
    let mut members = vec![0usize; declaration.groups.len()];
    let assigned = declaration
        .steps
        .iter()
        .map(|step| {
            let name = step.group.as_ref()?;
            let Some(index) = scope.group(name) else {
                errors.push(scope.unknown_group(name));
                return None;
            };
            members[index] += 1;
            let group = &declaration.groups[index];
            if step.order.value != group.order.value {
                errors.at(
                    step.order.span,
                    format_args!(
                        "step `{}` has order {} but its group `{name}` has order {}: a group's members share its order",
                        step.name, step.order.value, group.order.value
                    ),
                );
            }
            Some(index)
        })
        .collect();
    for (index, (group, count)) in declaration.groups.iter().zip(members).enumerate() {
        // A group whose name was refused is not a group members can join.
        if count == 0 && scope.group(&group.name) == Some(index) {
            let name = &group.name;
            errors.at(
                name.span(),
                format_args!("parallel group `{name}` has no members: add `group = {name}` to its steps"),
            );
        }
    }
    assigned
}

/// Checks that steps share an order only as members of one group.
pub(crate) fn orders(scope: &Scope<'_>, groups: &[Option<usize>], errors: &mut Errors) {
    let mut first_at: HashMap<u32, usize> = HashMap::new();
    for (index, step) in scope.declaration.steps.iter().enumerate() {
        if step.group.is_some() && groups[index].is_none() {
            continue; // its unknown group is reported already
        }
        let order = step.order.value;
        let Some(&first) = first_at.get(&order) else {
            first_at.insert(order, index);
            continue;
        };
        if groups[index].is_none() || groups[index] != groups[first] {
            let other = &scope.declaration.steps[first].name;
            errors.at(
                step.order.span,
                format_args!(
                    "steps `{other}` and `{}` share order {order}: steps share an order only as members of one #[parallel_group]",
                    step.name
                ),
            );
        }
    }
}

/// Attaches every setting to its step: each names a declared step, a step
/// takes each kind of setting once, and only custom steps take a
/// compensation.
pub(crate) fn settings<'a>(scope: &Scope<'a>, errors: &mut Errors) -> Vec<Settings<'a>> {
    let declaration = scope.declaration;
    let mut settings: Vec<Settings<'a>> = declaration.steps.iter().map(|_| Settings::default()).collect();
    for setting in &declaration.settings {
        let attribute = setting.setting.attribute();
        let Some(index) = scope.step(&setting.target) else {
            errors.push(scope.unknown_step(&setting.target, &format!("#[{attribute}]")));
            continue;
        };
        let step = &declaration.steps[index];
        let slot = &mut settings[index];
        let fresh = match &setting.setting {
            Setting::Placement(host) => set(&mut slot.placement, (host.value, &setting.attr)),
            Setting::Retry(retry) => set(&mut slot.retry, retry),
            Setting::Condition(expr) => set(&mut slot.condition, expr),
            Setting::Compensation => !std::mem::replace(&mut slot.compensation, true),
        };
        if !fresh {
            errors.on(
                &setting.attr,
                format_args!(
                    "step `{}` has a second #[{attribute}]: a step takes at most one",
                    step.name
                ),
            );
        }
        if matches!(setting.setting, Setting::Compensation) && !matches!(step.kind, StepKind::Custom { .. }) {
            errors.on(
                &setting.attr,
                format_args!(
                    "step `{}` is a built-in #[{}] step and undoes itself: #[compensation] is for custom steps",
                    step.name,
                    kind_name(step)
                ),
            );
        }
    }
    settings
}

/// Fills an empty `slot`; `false` when it was already filled.
fn set<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value);
    true
}

/// Checks that the Api steps form a prefix of the saga: every one runs
/// before every Worker step, so a task crosses from Api to Worker once.
pub(crate) fn api_prefix(scope: &Scope<'_>, settings: &[Settings<'_>], errors: &mut Errors) {
    let steps = &scope.declaration.steps;
    let first_worker = steps
        .iter()
        .zip(settings)
        .filter(|(_, s)| s.host() == Host::Worker)
        .min_by_key(|(step, _)| step.order.value);
    let Some((worker, _)) = first_worker else { return };
    for (step, setting) in steps.iter().zip(settings) {
        if let Some((Host::Api, attr)) = setting.placement
            && step.order.value >= worker.order.value
        {
            errors.on(
                attr,
                format_args!(
                    "Api steps must come before every Worker step: one hand-off point \
                     (Api step `{}` has order {}, Worker step `{}` order {})",
                    step.name, step.order.value, worker.name, worker.order.value
                ),
            );
        }
    }
}
