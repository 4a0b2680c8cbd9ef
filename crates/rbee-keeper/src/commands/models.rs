//! `rbee models list | pull | rm | set | show`: the models of every node.

use futures::StreamExt;
use rbee_api::hive::ModelSettings;
use rbee_api::queen::{
    ModelShowQuery, ModelsQuery, NodeModelEntry, NodeModelInfo, NodeModelPulled, NodeModelRemoved,
    NodeModelRequest, NodeModelSettingsRequest, NodeModelsList, PullEvent,
};
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use rbee_api::{ModelRef, NodeName};
use reqwest::Method;

use crate::cli::ModelsCommand;
use crate::error::{Result, fail};
use crate::output::{self, Bars};
use crate::queen::Queen;

pub async fn run(queen: &Queen, command: &ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { node, json } => {
            let query = ModelsQuery {
                node: node.as_deref().map(node_name).transpose()?,
                start: true,
            };
            let list: NodeModelsList = queen
                .json(queen.request(Method::GET, paths::MODELS_LIST).query(&query))
                .await?;
            if json.json {
                output::json(&list)?;
            } else {
                print_list(&list);
            }
            let unreachable: Vec<String> = (list.nodes.iter())
                .filter(|n| n.error.is_some())
                .map(|n| n.node.to_string())
                .collect();
            if unreachable.is_empty() {
                Ok(())
            } else {
                Err(fail(format!(
                    "the catalog of {} could not be read; `rbee workers health --node <node>` says why",
                    unreachable.join(", ")
                )))
            }
        }
        ModelsCommand::Pull { model, node } => {
            let req = NodeModelRequest {
                node: node_name(node)?,
                model: model_ref(model)?,
            };
            let pulled = pull(queen, &req).await?;
            let m = &pulled.model;
            if pulled.already_present {
                println!(
                    "{} is already on {} ({}).",
                    m.reference,
                    pulled.node,
                    output::size(m.size_bytes)
                );
            } else {
                println!(
                    "Pulled {} onto {} ({}).",
                    m.reference,
                    pulled.node,
                    output::size(m.size_bytes)
                );
            }
            Ok(())
        }
        ModelsCommand::Rm { model, node } => {
            let req = NodeModelRequest {
                node: node_name(node)?,
                model: model_ref(model)?,
            };
            let removed: NodeModelRemoved = queen
                .json(queen.request(Method::POST, paths::MODELS_REMOVE).json(&req))
                .await?;
            println!(
                "Removed {} from {}{}.",
                removed.removed.model_ref,
                removed.node,
                if removed.removed.file_removed {
                    ", and deleted its file"
                } else {
                    " (its file is yours and was left in place)"
                }
            );
            Ok(())
        }
        ModelsCommand::Set {
            model,
            chat_template,
            context_length,
            node,
        } => {
            let req = NodeModelSettingsRequest {
                node: node_name(node)?,
                model: model_ref(model)?,
                settings: ModelSettings {
                    chat_template: chat_template.clone(),
                    context_length: *context_length,
                },
            };
            let set: NodeModelEntry = queen
                .json(
                    queen
                        .request(Method::POST, paths::MODELS_SETTINGS)
                        .json(&req),
                )
                .await?;
            println!(
                "{} on {}: {}; workers started from now on run it so.",
                set.model.reference, set.node, set.model.settings
            );
            Ok(())
        }
        ModelsCommand::Show { model, node, json } => {
            let query = ModelShowQuery {
                model: model_ref(model)?,
                node: node.as_deref().map(node_name).transpose()?,
            };
            let shown: NodeModelInfo = queen
                .json(queen.request(Method::GET, paths::MODELS_SHOW).query(&query))
                .await?;
            if json.json {
                return output::json(&shown);
            }
            print_info(&shown);
            Ok(())
        }
    }
}

fn node_name(text: &str) -> Result<NodeName> {
    text.parse()
        .map_err(|e: rbee_api::ids::InvalidId| fail(e.to_string()))
}

fn model_ref(text: &str) -> Result<ModelRef> {
    text.parse()
        .map_err(|e: rbee_api::model_ref::InvalidModelRef| fail(e.to_string()))
}

fn print_list(list: &NodeModelsList) {
    println!(
        "{:<12} {:<10} {:<10} {:<20} MODEL",
        "NODE", "QUANT", "SIZE", "DOWNLOADED"
    );
    for node in &list.nodes {
        if let Some(error) = &node.error {
            println!("{:<12} (not reachable: {error})", node.node);
            continue;
        }
        for m in &node.models {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.downloaded_at_unix);
            println!(
                "{:<12} {:<10} {:<10} {:<20} {}",
                node.node,
                m.quantization.as_deref().unwrap_or("-"),
                output::size(m.size_bytes),
                humantime::format_rfc3339_seconds(when),
                m.reference
            );
        }
    }
    for node in list.nodes.iter().filter(|n| n.error.is_none()) {
        let total: u64 = node.models.iter().map(|m| m.size_bytes).sum();
        let free = node
            .disk_free_bytes
            .map_or_else(String::new, |f| format!(", {} free", output::size(f)));
        eprintln!(
            "{}: {} model(s), {}{free}",
            node.node,
            node.models.len(),
            output::size(total)
        );
    }
}

fn print_info(shown: &NodeModelInfo) {
    let i = &shown.info;
    let row = |label: &str, value: String| println!("{label:<16} {value}");
    row("model", shown.entry.reference.to_string());
    row("node", shown.node.to_string());
    row("file", shown.entry.local_path.clone());
    row("size", output::size(shown.entry.size_bytes));
    if let Some(name) = &i.name {
        row("name", name.clone());
    }
    row("architecture", i.architecture.clone());
    row(
        "parameters",
        format!(
            "{} ({})",
            rbee_api::ollama::parameter_size(i.parameters),
            i.parameters
        ),
    );
    row(
        "context",
        match shown.entry.settings.context_length {
            Some(_) => format!("{} tokens (yours, `rbee models set`)", i.context_length),
            None => format!("{} tokens", i.context_length),
        },
    );
    row("layers", i.layers.to_string());
    row("embedding", i.embedding_length.to_string());
    row(
        "vocabulary",
        format!("{} tokens ({})", i.vocab_size, i.tokenizer),
    );
    row("quantization", i.quantization.clone());
    if !i.tensor_formats.is_empty() {
        let mix: Vec<String> = (i.tensor_formats.iter())
            .map(|(format, count)| format!("{format} ×{count}"))
            .collect();
        row("tensors", mix.join(", "));
    }
    row(
        "chat template",
        match (&shown.entry.settings.chat_template, &i.chat_template) {
            (Some(_), _) => "yours (`rbee models set`)",
            (None, Some(_)) => "yes",
            (None, None) => "no (the family's usual one is used)",
        }
        .into(),
    );
    row(
        "licence",
        i.license
            .clone()
            .unwrap_or_else(|| "not stated in the file".into()),
    );
}

/// Follows a pull, with the download's progress bar; the catalog entry at its end.
async fn pull(queen: &Queen, req: &NodeModelRequest) -> Result<NodeModelPulled> {
    let resp = queen
        .send(queen.request(Method::POST, paths::MODELS_PULL).json(req))
        .await?;
    let mut frames = Box::pin(rbee_http::client::frames(resp));
    let mut bars = Bars::default();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| {
            fail(format!(
                "the stream from queen-rbee broke: {e}; pull again to resume the download"
            ))
        })?;
        match PullEvent::from_frame(&frame) {
            Some(Ok(PullEvent::Narration(n))) => output::narrate(&n),
            Some(Ok(PullEvent::Download(d))) => bars.download(&d),
            Some(Ok(PullEvent::Error(e))) => {
                bars.clear();
                return Err(fail(format!("{} ({})", e.error.message, e.error.code)));
            }
            Some(Ok(PullEvent::Done(done))) => {
                bars.clear();
                return Ok(done);
            }
            Some(Err(e)) => return Err(fail(format!("unreadable event from queen-rbee: {e}"))),
            None => {}
        }
    }
    Err(fail("the stream from queen-rbee ended without a result"))
}
