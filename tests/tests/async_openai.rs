//! The same basics as the Python SDK test, from Rust with `async-openai` (plain HTTP, no TLS
//! features): models, chat plain and streamed, embeddings, and an API error as a typed error.

mod common;

use async_openai::{
    config::OpenAIConfig,
    error::OpenAIError,
    types::{
        chat::{ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs},
        embeddings::CreateEmbeddingRequestArgs,
    },
    Client,
};
use common::{serving_config, wait_ready, Node};
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_talks_to_the_node() {
    let node = Node::new();
    node.write_config(&serving_config(false));
    let running = node.start(&[]);
    wait_ready(&running);
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("http://{}/v1", running.addr))
            .with_api_key("unused-on-loopback"),
    );

    let models = client.models().list().await.unwrap();
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&"chat") && ids.contains(&"embed"), "{ids:?}");

    let request = CreateChatCompletionRequestArgs::default()
        .model("chat")
        .messages([ChatCompletionRequestUserMessage::from("Name three colours.").into()])
        .max_completion_tokens(20u32)
        .temperature(0.0)
        .build()
        .unwrap();
    let plain = client.chat().create(request.clone()).await.unwrap();
    let text = plain.choices[0].message.content.clone().unwrap_or_default();
    assert!(!text.trim().is_empty());
    let usage = plain.usage.unwrap();
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut streamed = String::new();
    let mut finish = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for choice in chunk.choices {
            streamed.push_str(choice.delta.content.as_deref().unwrap_or(""));
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason;
            }
        }
    }
    assert_eq!(streamed, text, "greedy stream equals greedy answer");
    assert!(finish.is_some());

    let embeddings = client
        .embeddings()
        .create(
            CreateEmbeddingRequestArgs::default()
                .model("embed")
                .input(["first sentence", "second sentence"])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(embeddings.data.len(), 2);
    assert_eq!(embeddings.data[1].embedding.len(), 384);

    let missing = CreateChatCompletionRequestArgs::default()
        .model("no-such-model")
        .messages([ChatCompletionRequestUserMessage::from("hi").into()])
        .build()
        .unwrap();
    match client.chat().create(missing).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code.as_u16(), 404);
            assert_eq!(e.api_error.code.as_deref(), Some("model_not_found"));
        }
        other => panic!("expected a 404 API error, got {other:?}"),
    }
    assert!(running.stop().success());
}
