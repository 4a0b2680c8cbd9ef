//! Rendering chat messages with the model's own Jinja template (`tokenizer.chat_template`).
//!
//! Templates are written for Hugging Face's Jinja environment, so the environment mirrors it:
//! blocks trimmed, Python string methods available, `raise_exception` defined.

use minijinja::{Environment, ErrorKind, context};
use rbee_api::worker::ChatMessage;

use crate::arch::Arch;
use crate::tools::{TemplateMessage, TemplateTool, ToolStyle, template_messages};

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("the model has no chat template; send a raw `prompt` instead of `messages`")]
    Missing,
    #[error("the model's chat template is invalid: {0}")]
    Invalid(String),
    #[error("the model's chat template rejected the messages: {0}")]
    Render(String),
}

/// The usual chat format of a family, for files that carry no template of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsualTemplate {
    ChatMl,
    Gemma,
    Llama3,
    Llama2,
    Phi3,
}

impl UsualTemplate {
    /// The format of `arch`; for `llama`, the one whose marker tokens the vocabulary has.
    pub fn for_model(arch: Arch, has_token: impl Fn(&str) -> bool) -> Self {
        match arch {
            Arch::Qwen2 | Arch::Qwen3 => Self::ChatMl,
            Arch::Gemma3 => Self::Gemma,
            Arch::Phi3 => Self::Phi3,
            Arch::Llama if has_token("<|start_header_id|>") => Self::Llama3,
            Arch::Llama if has_token("<|im_start|>") => Self::ChatMl,
            Arch::Llama => Self::Llama2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ChatMl => "ChatML",
            Self::Gemma => "Gemma",
            Self::Llama3 => "Llama 3",
            Self::Llama2 => "Llama 2 [INST]",
            Self::Phi3 => "Phi-3",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Self::ChatMl => concat!(
                "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}",
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
            ),
            // Gemma has no system role: its text opens the first user turn.
            Self::Gemma => concat!(
                "{% set ns = namespace(system='') %}",
                "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'] + '\n\n' %}",
                "{% else %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}",
                "{{ '<start_of_turn>' + role + '\n' + ns.system + m['content'] | trim + '<end_of_turn>\n' }}{% set ns.system = '' %}",
                "{% endif %}{% endfor %}",
                "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
            ),
            Self::Llama3 => concat!(
                "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}",
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
            ),
            Self::Llama2 => concat!(
                "{% set ns = namespace(system='') %}",
                "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = '<<SYS>>\n' + m['content'] + '\n<</SYS>>\n\n' %}",
                "{% elif m['role'] == 'user' %}{{ '[INST] ' + ns.system + m['content'] | trim + ' [/INST]' }}{% set ns.system = '' %}",
                "{% else %}{{ ' ' + m['content'] | trim + eos_token }}{% endif %}{% endfor %}"
            ),
            Self::Phi3 => concat!(
                "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}",
                "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
            ),
        }
    }
}

#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether the template renders `tools` itself.
    tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos`/`eos` are the texts of the model's BOS and EOS tokens.
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self, ChatTemplateError> {
        let source = source.ok_or(ChatTemplateError::Missing)?;
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| ChatTemplateError::Invalid(e.to_string()))?;
        Ok(Self {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
            tools: source.contains("tools"),
        })
    }

    /// How tools are offered to this template ([`crate::tools`]).
    pub fn tool_style(&self) -> ToolStyle {
        if self.tools {
            ToolStyle::Template
        } else {
            ToolStyle::Generic
        }
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, ChatTemplateError> {
        self.render_prepared(&template_messages(messages, self.tool_style()), None)
    }

    /// [`Self::render`] for messages already shaped for the template, with the `tools` a
    /// template that renders them receives.
    pub fn render_prepared(
        &self,
        messages: &[TemplateMessage],
        tools: Option<&[TemplateTool]>,
    ) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| ChatTemplateError::Invalid(e.to_string()))?;
        template
            .render(context! {
                messages => minijinja::Value::from_serialize(messages),
                tools => tools.map(minijinja::Value::from_serialize),
                add_generation_prompt => true,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| ChatTemplateError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage::new("user", text)
    }

    #[test]
    fn chatml_template_renders_default_system_and_generation_prompt() {
        let t = ChatTemplate::new(Some(CHATML), "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(
            t.render(&[user("Hi")]).unwrap(),
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama2_style_template_with_python_methods_and_raise_exception() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'].strip() }} [/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&[user("  hello ")]).unwrap(),
            "<s>[INST] hello [/INST]"
        );
        let err = t.render(&[ChatMessage::new("system", "x")]).unwrap_err();
        assert!(err.to_string().contains("Only user and assistant"), "{err}");
    }

    #[test]
    fn a_template_that_renders_tools_receives_them_and_the_calls_in_the_history() {
        use crate::tools::{ToolStyle, ToolUse};
        use rbee_api::worker::{Tool, ToolCall, ToolChoice};
        // The shape of Qwen's template, cut down.
        let src = "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters | tojson }}{% endfor %}</tools>\n{% endif %}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} {{ c.function.arguments.city }}</tool_call>{% endfor %}\n{% endfor %}<|assistant|>";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        assert_eq!(t.tool_style(), ToolStyle::Template);
        let tool = Tool {
            name: "get_weather".into(),
            description: None,
            parameters: Some(serde_json::json!({"type": "object"})),
        };
        let tools = ToolUse::new(t.tool_style(), &[tool], ToolChoice::Auto).unwrap();
        let history = [
            user("Weather?"),
            ChatMessage {
                role: "assistant".into(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city": "Oslo"}"#.into(),
                }],
                ..ChatMessage::default()
            },
        ];
        let text = t
            .render_prepared(
                &tools.template_messages(&history),
                tools.template_tools().as_deref(),
            )
            .unwrap();
        assert_eq!(
            text,
            // (`trim_blocks` drops the newline after each `{% endfor %}`.)
            "<tools>get_weather:{\"type\":\"object\"}</tools>\n<|user|>Weather?<|assistant|><tool_call>get_weather Oslo</tool_call><|assistant|>"
        );
        let plain = ChatTemplate::new(Some(CHATML), "", "").unwrap();
        assert_eq!(plain.tool_style(), ToolStyle::Generic);
    }

    fn system(text: &str) -> ChatMessage {
        ChatMessage::new("system", text)
    }

    #[test]
    fn the_usual_gemma_template_folds_the_system_prompt_into_the_first_turn() {
        let source = UsualTemplate::for_model(Arch::Gemma3, |_| false).source();
        let t = ChatTemplate::new(Some(source), "<bos>", "<eos>").unwrap();
        assert_eq!(
            t.render(&[system("Be brief."), user("Hi ")]).unwrap(),
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn a_llama_file_gets_the_template_its_vocabulary_marks() {
        let llama3 = |t: &str| t == "<|start_header_id|>";
        assert_eq!(
            UsualTemplate::for_model(Arch::Llama, llama3),
            UsualTemplate::Llama3
        );
        assert_eq!(
            UsualTemplate::for_model(Arch::Llama, |_| false),
            UsualTemplate::Llama2
        );
        for usual in [
            UsualTemplate::ChatMl,
            UsualTemplate::Llama3,
            UsualTemplate::Llama2,
            UsualTemplate::Phi3,
        ] {
            let t = ChatTemplate::new(Some(usual.source()), "<s>", "</s>").unwrap();
            let text = t.render(&[system("S"), user("U")]).unwrap();
            assert!(
                text.contains('S') && text.contains('U'),
                "{}: {text}",
                usual.name()
            );
        }
    }

    #[test]
    fn missing_template_is_reported() {
        assert!(matches!(
            ChatTemplate::new(None, "", ""),
            Err(ChatTemplateError::Missing)
        ));
    }
}
