//! `#[shadowdiff::experiment]`: run a function's body as the control and another function with
//! the same arguments as the candidate. Use it through the `shadowdiff` crate.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, Meta, Pat, ReturnType, Token, Type};

/// Turns a function into an experiment: the body is the control (its result is always
/// returned), `candidate` is called with clones of the same arguments when the call is sampled
/// in, and the results are compared and published.
///
/// Arguments: `candidate = path` (required), `percent = 1.0` (default 100), `name = "…"`
/// (default: the function's name), `timeout_ms = 500` (async only), `eq` (compare with
/// `PartialEq` instead of serializing).
#[proc_macro_attribute]
pub fn experiment(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Args {
    candidate: syn::Path,
    percent: Option<Expr>,
    name: Option<syn::LitStr>,
    timeout_ms: Option<Expr>,
    eq: bool,
}

fn parse_args(args: proc_macro2::TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let (mut candidate, mut percent, mut name, mut timeout_ms, mut eq) =
        (None, None, None, None, false);
    for meta in metas {
        let key = meta
            .path()
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match (key.as_str(), &meta) {
            ("candidate", Meta::NameValue(nv)) => match &nv.value {
                Expr::Path(p) => candidate = Some(p.path.clone()),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "`candidate` must name a function, e.g. `candidate = new_impl`",
                    ))
                }
            },
            ("percent", Meta::NameValue(nv)) => percent = Some(nv.value.clone()),
            ("timeout_ms", Meta::NameValue(nv)) => timeout_ms = Some(nv.value.clone()),
            ("name", Meta::NameValue(nv)) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => name = Some(s.clone()),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "`name` must be a string literal",
                    ))
                }
            },
            ("eq", Meta::Path(_)) => eq = true,
            _ => {
                return Err(syn::Error::new_spanned(
                    meta,
                    "unknown argument; expected `candidate = <fn>`, `percent = <0..100>`, \
                     `name = \"...\"`, `timeout_ms = <ms>` or `eq`",
                ))
            }
        }
    }
    let candidate = candidate.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing `candidate = <fn>`: name the function to run as the candidate, \
             e.g. `#[shadowdiff::experiment(candidate = new_impl)]`",
        )
    })?;
    Ok(Args {
        candidate,
        percent,
        name,
        timeout_ms,
        eq,
    })
}

/// True when the return type is written `Result<…>` (any path ending in `Result`).
fn returns_result(ret: &ReturnType) -> bool {
    match ret {
        ReturnType::Type(_, ty) => match ty.as_ref() {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let args = parse_args(args)?;
    let func: ItemFn = syn::parse2(item)?;
    let mut idents = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "#[shadowdiff::experiment] does not support `self` receivers: \
                     put the experiment on a free function that takes the receiver as an argument",
                ))
            }
            FnArg::Typed(t) => match t.pat.as_ref() {
                Pat::Ident(p) if p.subpat.is_none() => idents.push(p.ident.clone()),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "#[shadowdiff::experiment] needs plain identifiers as arguments \
                         (they are cloned for the candidate): bind the pattern inside the body",
                    ))
                }
            },
        }
    }
    if let ReturnType::Type(_, ty) = &func.sig.output {
        if let Type::ImplTrait(_) = ty.as_ref() {
            return Err(syn::Error::new_spanned(
                ty,
                "#[shadowdiff::experiment] needs a nameable return type, not `impl Trait`",
            ));
        }
    }

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let ret = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| syn::LitStr::new(&sig.ident.to_string(), sig.ident.span()));
    let percent = args.percent.as_ref().map(|p| quote!(.percent((#p) as f64)));
    let candidate = &args.candidate;
    let candidate_name = quote!(#candidate).to_string().replace(' ', "");
    let is_async = sig.asyncness.is_some();
    let fallible = returns_result(&sig.output);
    let control = match (is_async, fallible) {
        (false, false) => quote!(control),
        (false, true) => quote!(try_control),
        (true, false) => quote!(control_async),
        (true, true) => quote!(try_control_async),
    };
    let run = if args.eq { quote!(run_eq) } else { quote!(run) };
    let span = candidate.span();
    let (control_arm, candidate_call, tail) = if is_async {
        let timeout = args
            .timeout_ms
            .as_ref()
            .map(|t| quote!(.timeout(::core::time::Duration::from_millis((#t) as u64))));
        (
            quote!(::shadowdiff::__private::typed_future::<#ret, _>(async move #block)),
            quote_spanned!(span=> move || #candidate(#(#idents),*)),
            quote!(#timeout.#run().await),
        )
    } else {
        if let Some(t) = &args.timeout_ms {
            return Err(syn::Error::new_spanned(
                t,
                "`timeout_ms` applies to async functions only: a sync candidate cannot be cancelled",
            ));
        }
        (
            quote!(move || -> #ret #block),
            quote_spanned!(span=> move || -> #ret { #candidate(#(#idents),*) }),
            quote!(.#run()),
        )
    };
    let clones = idents
        .iter()
        .map(|i| quote_spanned!(i.span()=> ::core::clone::Clone::clone(&#i)));
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let mut __sd_experiment =
                ::shadowdiff::Experiment::with_settings(::shadowdiff::settings!(#name)) #percent;
            // Arguments are cloned for the candidate only when this call is sampled in.
            let __sd_args = if __sd_experiment.sampled() {
                ::core::option::Option::Some((#(#clones,)*))
            } else {
                ::core::option::Option::None
            };
            let __sd_experiment = __sd_experiment.#control(#control_arm);
            let __sd_experiment = match __sd_args {
                ::core::option::Option::Some((#(#idents,)*)) => {
                    __sd_experiment.candidate(#candidate_name, #candidate_call)
                }
                ::core::option::Option::None => __sd_experiment,
            };
            __sd_experiment #tail
        }
    })
}
