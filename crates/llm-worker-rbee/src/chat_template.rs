//! Rendering chat messages with the model's own Jinja template (`tokenizer.chat_template`).
//!
//! Templates are written for Hugging Face's Jinja environment, so the environment mirrors it:
//! blocks trimmed, Python string methods available, `raise_exception` defined.

use minijinja::{Environment, ErrorKind, context};
use rbee_api::worker::ChatMessage;

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("the model has no chat template; send a raw `prompt` instead of `messages`")]
    Missing,
    #[error("the model's chat template is invalid: {0}")]
    Invalid(String),
    #[error("the model's chat template rejected the messages: {0}")]
    Render(String),
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

    #[test]
    fn missing_template_is_reported() {
        assert!(matches!(
            ChatTemplate::new(None, "", ""),
            Err(ChatTemplateError::Missing)
        ));
    }
}
