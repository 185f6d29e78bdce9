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
    let original: proc_macro2::TokenStream = item.clone().into();
    match expand(args.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => {
            // The function itself stays, so its callers see this one error, not a second
            // "cannot find function" for each call.
            let mut out = e.to_compile_error();
            out.extend(original);
            out.into()
        }
    }
}

struct Args {
    candidate: syn::Path,
    percent: Option<Expr>,
    name: Option<syn::LitStr>,
    timeout_ms: Option<Expr>,
    eq: bool,
    /// `publisher = path`: a function returning the `Arc<dyn Publisher>` to publish to.
    publisher: Option<syn::Path>,
    /// `compare = path`: `fn(&T, &T) -> bool` on the values (the `Ok` values for `Result`).
    compare: Option<syn::Path>,
    /// `compare_errors = path`: `fn(&E, &E) -> bool` on the errors (`Result` only).
    compare_errors: Option<syn::Path>,
    /// `context(key = expr, …)`: published with the run; the expressions see the arguments.
    context: Vec<(syn::Ident, Expr)>,
    /// `strict`: a failing run panics on the caller's path (for tests).
    strict: bool,
}

fn path_value(nv: &syn::MetaNameValue, what: &str) -> syn::Result<syn::Path> {
    match &nv.value {
        Expr::Path(p) => Ok(p.path.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{what}` must name a function (a path), e.g. `{what} = my_{what}`"),
        )),
    }
}

fn parse_args(args: proc_macro2::TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let (mut candidate, mut percent, mut name, mut timeout_ms, mut eq) =
        (None, None, None, None, false);
    let (mut publisher, mut compare, mut compare_errors, mut context, mut strict) =
        (None, None, None, Vec::new(), false);
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
            ("strict", Meta::Path(_)) => strict = true,
            ("publisher", Meta::NameValue(nv)) => publisher = Some(path_value(nv, "publisher")?),
            ("compare", Meta::NameValue(nv)) => compare = Some(path_value(nv, "compare")?),
            ("compare_errors", Meta::NameValue(nv)) => {
                compare_errors = Some(path_value(nv, "compare_errors")?)
            }
            ("context", Meta::List(list)) => {
                let pairs = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated
                    .parse2(list.tokens.clone())?;
                for pair in pairs {
                    let key = pair.path.get_ident().cloned().ok_or_else(|| {
                        syn::Error::new_spanned(
                            &pair.path,
                            "context keys are plain names: `context(user = user_id)`",
                        )
                    })?;
                    context.push((key, pair.value));
                }
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    meta,
                    "unknown argument; expected `candidate = <fn>`, `percent = <0..100>`, \
                     `name = \"...\"`, `timeout_ms = <ms>`, `eq`, `strict`, `publisher = <fn>`, \
                     `compare = <fn>`, `compare_errors = <fn>` or `context(key = <expr>, ...)`",
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
        publisher,
        compare,
        compare_errors,
        context,
        strict,
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
    if let (Some(f), false) = (&args.compare_errors, fallible) {
        return Err(syn::Error::new_spanned(
            f,
            "`compare_errors` applies to functions returning `Result` only",
        ));
    }
    let publisher = args
        .publisher
        .as_ref()
        .map(|p| quote_spanned!(p.span()=> .publisher(#p())));
    let compare = args
        .compare
        .as_ref()
        .map(|p| quote_spanned!(p.span()=> .compare(#p)));
    let compare_errors = args
        .compare_errors
        .as_ref()
        .map(|p| quote_spanned!(p.span()=> .compare_errors(#p)));
    let strict = args.strict.then(|| quote!(.raise_on_mismatches(true)));
    let context_keys: Vec<String> = args.context.iter().map(|(k, _)| k.to_string()).collect();
    let context_values = args.context.iter().map(|(_, v)| v);
    let context_indexes = (0..args.context.len()).map(syn::Index::from);
    let clones = idents
        .iter()
        .map(|i| quote_spanned!(i.span()=> ::core::clone::Clone::clone(&#i)));
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let mut __sd_experiment =
                ::shadowdiff::Experiment::with_settings(::shadowdiff::settings!(#name)) #percent;
            // Arguments are cloned for the candidate only when this call is sampled in.
            let __sd_sampled = __sd_experiment.sampled();
            let __sd_args = if __sd_sampled {
                ::core::option::Option::Some((#(#clones,)*))
            } else {
                ::core::option::Option::None
            };
            // Context values are taken before the body moves the arguments.
            let __sd_context = if __sd_sampled {
                ::core::option::Option::Some((#(::std::string::ToString::to_string(&(#context_values)),)*))
            } else {
                ::core::option::Option::None
            };
            let __sd_experiment = __sd_experiment.#control(#control_arm);
            // The candidate first: a sync experiment keeps it in the allocation the options
            // that follow use (options given before it are moved there).
            let __sd_experiment = match __sd_args {
                ::core::option::Option::Some((#(#idents,)*)) => {
                    __sd_experiment.candidate(#candidate_name, #candidate_call)
                }
                ::core::option::Option::None => __sd_experiment,
            };
            let mut __sd_experiment = __sd_experiment #publisher #compare #compare_errors #strict;
            if let ::core::option::Option::Some(__sd_context) = __sd_context {
                #( __sd_experiment = __sd_experiment.context(#context_keys, __sd_context.#context_indexes); )*
                let _ = __sd_context;
            }
            __sd_experiment #tail
        }
    })
}
