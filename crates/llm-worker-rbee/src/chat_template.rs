//! Rendering chat messages with the model's own Jinja template (`tokenizer.chat_template`).
//!
//! Templates are written for Hugging Face's Jinja environment, so the environment mirrors it:
//! blocks trimmed, Python string methods available, `raise_exception` defined.

use minijinja::{Environment, ErrorKind, context};
use rbee_api::worker::ChatMessage;

use crate::arch::Arch;

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

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
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
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| ChatTemplateError::Invalid(e.to_string()))?;
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role, content => m.content })
            .collect();
        template
            .render(context! {
                messages => messages,
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
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        }
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
        let err = t
            .render(&[ChatMessage {
                role: "tool".into(),
                content: "x".into(),
            }])
            .unwrap_err();
        assert!(err.to_string().contains("Only user and assistant"), "{err}");
    }

    fn system(text: &str) -> ChatMessage {
        ChatMessage {
            role: "system".into(),
            content: text.into(),
        }
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
