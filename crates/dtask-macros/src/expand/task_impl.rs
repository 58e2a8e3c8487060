//! `impl ::dtask::Task for <Struct>`: each method dispatches on the step
//! index (into the sorted steps of the definition).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use super::module::input_name;
use super::{data_value, definition::definition, depends};
use crate::checked::{Condition, Kind, Source, Step, Task};

pub(super) fn task_impl(task: &Task) -> TokenStream {
    let Task {
        ident,
        module,
        request,
        response,
        ..
    } = task;
    let steps_bound = quote_spanned!(ident.span()=> #module::Steps);
    let definition = definition(task);
    let run_step = run_step(task);
    let adopt_output = adopt_output(task);
    let compensate_step = compensate_step(task);
    let evaluate_condition = evaluate_condition(task);
    let build_response = build_response(task);
    let attach_files = attach_files(task);
    let upstreams = depends::upstreams(task);
    // Evaluated at compile time: a cycle of #[depends_on] edges among the
    // tasks the compiler sees fails here (every task of a cycle has one).
    let chain_check =
        (!task.dependencies.is_empty()).then(|| quote!(const _: usize = <#ident as ::dtask::Task>::CHAIN_DEPTH;));
    quote! {
        impl ::dtask::Task for #ident
        where
            Self: #steps_bound,
        {
            type Request = #request;
            type Response = #response;
            type Data = #module::Data;

            fn definition() -> &'static ::dtask::__private::TaskDefinition {
                #definition
            }

            #run_step
            #adopt_output
            #compensate_step
            #evaluate_condition
            #build_response
            #attach_files
            #upstreams
        }

        #chain_check
    }
}

/// `attach_files`: the uploaded files of a submission go to the request
/// field that the first upload step reading the request names.
fn attach_files(task: &Task) -> TokenStream {
    let Some(source) = task.steps.iter().find_map(|step| match &step.kind {
        Kind::Upload { source, .. } if source.root.is_none() && !source.fields.is_empty() => Some(source),
        _ => None,
    }) else {
        return TokenStream::new();
    };
    let fields = &source.fields;
    let slot = quote_spanned!(source.written.span()=> &mut request #(.#fields)*);
    quote! {
        fn attach_files(
            request: &mut Self::Request,
            files: ::dtask::Files,
        ) -> ::dtask::__private::Result<(), ::dtask::Files> {
            ::dtask::__private::attach_files(#slot, files)
        }
    }
}

fn run_step(task: &Task) -> TokenStream {
    let module = &task.module;
    let arms = task.steps.iter().enumerate().map(|(index, step)| {
        let snake = &step.snake;
        let produce = produce(task, step);
        quote! {
            #index => ::dtask::__private::Box::pin(async move {
                let out = #produce;
                ::dtask::__private::Result::<_, ::dtask::StepError>::Ok(::dtask::__private::Box::new(
                    move |d: &mut #module::Data| d.#snake = ::dtask::__private::Option::Some(out),
                ) as ::dtask::__private::DataUpdate<#module::Data>)
            }),
        }
    });
    quote! {
        fn run_step<'a>(
            &'a self,
            step: usize,
            cx: &'a ::dtask::StepContext,
            request: &'a Self::Request,
            data: &'a Self::Data,
        ) -> ::dtask::__private::BoxFuture<
            'a,
            ::dtask::__private::Result<::dtask::__private::DataUpdate<Self::Data>, ::dtask::StepError>,
        > {
            let _ = (cx, request, data);
            match step {
                #(#arms)*
                _ => ::dtask::__private::Box::pin(async move {
                    ::dtask::__private::Result::Err(::dtask::__private::unknown_step(step))
                }),
            }
        }
    }
}

/// `adopt_output`: moves one step's output field from one data to another.
fn adopt_output(task: &Task) -> TokenStream {
    let arms = task.steps.iter().enumerate().map(|(index, step)| {
        let snake = &step.snake;
        quote!(#index => into.#snake = from.#snake.take(),)
    });
    quote! {
        fn adopt_output(step: usize, from: &mut Self::Data, into: &mut Self::Data) {
            match step {
                #(#arms)*
                _ => {}
            }
        }
    }
}

/// The expression computing a step's data, inside `run_step`.
fn produce(task: &Task, step: &Step) -> TokenStream {
    let module = &task.module;
    match &step.kind {
        Kind::Upload { bucket, source } => {
            let source = source_ref(task, source);
            quote!(::dtask::__private::upload(cx, #bucket, #source).await?)
        }
        Kind::Download { source } => {
            let source = source_ref(task, source);
            quote!(::dtask::__private::download(cx, #source).await?)
        }
        Kind::Custom { inputs, .. } => {
            let input = input_name(step);
            let snake = &step.snake;
            let fields = inputs.iter().map(|&index| {
                let producer = &task.steps[index];
                let field = &producer.snake;
                let value = data_value(producer);
                quote!(#field: #value,)
            });
            quote! {{
                let input = #module::#input { request, #(#fields)* };
                <Self as #module::Steps>::#snake(self, cx, input).await?
            }}
        }
    }
}

/// A reference to what a built-in step reads, spanned on the source as
/// written so that a type error points at it.
fn source_ref(task: &Task, source: &Source) -> TokenStream {
    let fields = &source.fields;
    let written = &source.written;
    let root = match source.root {
        None => quote_spanned!(written.span()=> &#written),
        Some(index) => {
            let producer = &task.steps[index];
            let snake = &producer.snake;
            let name = producer.name.to_string();
            let required = quote_spanned!(written.span()=> ::dtask::__private::required(data.#snake.as_ref(), #name)?);
            if fields.is_empty() {
                // `required` already gives a reference.
                quote_spanned!(written.span()=> &*#required)
            } else {
                quote_spanned!(written.span()=> &#required)
            }
        }
    };
    quote!(#root #(.#fields)*)
}

fn compensate_step(task: &Task) -> TokenStream {
    let module = &task.module;
    let mut arms = Vec::new();
    let mut nothing_to_undo = Vec::new();
    for (index, step) in task.steps.iter().enumerate() {
        let snake = &step.snake;
        let body = match &step.kind {
            Kind::Upload { .. } => quote!(::dtask::__private::compensate_upload(cx, data.#snake.as_ref())),
            Kind::Download { .. } => quote!(::dtask::__private::compensate_download(data.#snake.as_ref())),
            Kind::Custom { .. } if step.user_compensation => {
                let method = format_ident!("compensate_{}", snake);
                quote!(async move {
                    match data.#snake.as_ref() {
                        ::dtask::__private::Option::Some(produced) => {
                            <Self as #module::Steps>::#method(self, cx, request, produced).await
                        }
                        ::dtask::__private::Option::None => ::dtask::__private::Result::Ok(()),
                    }
                })
            }
            Kind::Custom { .. } => {
                nothing_to_undo.push(index);
                continue;
            }
        };
        arms.push(quote!(#index => ::dtask::__private::Box::pin(#body),));
    }
    let nothing = (!nothing_to_undo.is_empty()).then(|| {
        quote! {
            #(#nothing_to_undo)|* => ::dtask::__private::Box::pin(async { ::dtask::__private::Result::Ok(()) }),
        }
    });
    quote! {
        fn compensate_step<'a>(
            &'a self,
            step: usize,
            cx: &'a ::dtask::StepContext,
            request: &'a Self::Request,
            data: &'a Self::Data,
        ) -> ::dtask::__private::BoxFuture<'a, ::dtask::__private::Result<(), ::dtask::StepError>> {
            let _ = (cx, request, data);
            match step {
                #(#arms)*
                #nothing
                _ => ::dtask::__private::Box::pin(async move {
                    ::dtask::__private::Result::Err(::dtask::__private::unknown_step(step))
                }),
            }
        }
    }
}

fn evaluate_condition(task: &Task) -> TokenStream {
    let arms = task.steps.iter().enumerate().filter_map(|(index, step)| {
        let body = condition_body(task, step.condition.as_ref()?);
        Some(quote!(#index => { #body }))
    });
    quote! {
        fn evaluate_condition(
            step: usize,
            request: &Self::Request,
            __data: &Self::Data,
        ) -> ::dtask::__private::Option<::dtask::__private::ConditionSnapshot> {
            let _ = (request, __data);
            match step {
                #(#arms)*
                _ => ::dtask::__private::Option::None,
            }
        }
    }
}

/// Binds the data the condition reads (or reports it missing), evaluates
/// it, and records the values it saw.
fn condition_body(task: &Task, condition: &Condition) -> TokenStream {
    let text = &condition.text;
    let bindings = condition.reads.iter().map(|&index| {
        let producer = &task.steps[index];
        let snake = &producer.snake;
        let name = producer.name.to_string();
        quote! {
            let #snake = match __data.#snake.as_ref() {
                ::dtask::__private::Option::Some(value) => value,
                ::dtask::__private::Option::None => {
                    return ::dtask::__private::Option::Some(::dtask::__private::condition_missing(#text, #name));
                }
            };
        }
    });
    let snapshot = snapshot(condition);
    quote! {
        #(#bindings)*
        ::dtask::__private::Option::Some(#snapshot)
    }
}

/// Evaluates a condition whose data are bound, into the
/// `ConditionSnapshot` of the values it saw.
pub(super) fn snapshot(condition: &Condition) -> TokenStream {
    let Condition {
        expr, text, observed, ..
    } = condition;
    let observed = observed
        .iter()
        .map(|(path, value)| quote!(::dtask::__private::observe(#path, &#value)));
    quote! {{
        let holds: bool = #expr;
        ::dtask::__private::ConditionSnapshot {
            expression: ::std::string::String::from(#text),
            observed: <::dtask::__private::Vec<::dtask::__private::ObservedValue>>::from([#(#observed),*]),
            holds,
        }
    }}
}

fn build_response(task: &Task) -> TokenStream {
    let module = &task.module;
    let fields = task.steps.iter().map(|step| {
        let snake = &step.snake;
        let value = data_value(step);
        quote!(#snake: #value,)
    });
    quote! {
        fn response(
            &self,
            request: &Self::Request,
            data: &Self::Data,
        ) -> ::dtask::__private::Result<Self::Response, ::dtask::StepError> {
            let outputs = #module::Outputs { request, #(#fields)* };
            <Self as #module::Steps>::response(self, outputs)
        }
    }
}
