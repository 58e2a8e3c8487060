//! Less common forms: a private task in a nested module, `self::` type
//! paths, a race group (`await_all = false`) whose members' data is
//! optional downstream, a download from a request field, an upload of a
//! whole step's data, conditions with closures and method calls, and a
//! custom step with no output, and an output type whose name the generated
//! module also declares (`Data`).
#![deny(warnings, unreachable_pub, unused)]

mod jobs {
    use dtask::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Request {
        pub(crate) stored: StoredObjects,
        pub(crate) tags: Vec<String>,
        pub(crate) limit: Option<u64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Answer(pub(crate) u64);

    /// Shares its name with the generated `mirrors::Data`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Data(pub(crate) u8);

    pub(crate) const MAX: u64 = 1 << 30;

    fn is_tag(tag: &str) -> bool {
        !tag.is_empty()
    }

    #[dtask::task(name = "race.mirrors-v2", request = self::Request, response = crate::jobs::Answer, max_retries = 0, cancellable = false, encrypt_messages = true)]
    #[file_download(Fetch, order = 0, source = request.stored, timeout_secs = 30)]
    #[parallel_group(Fastest, order = 1, await_all = false)]
    #[custom_step(MirrorA, order = 1, group = Fastest, inputs(fetch), output = self::Answer)]
    #[custom_step(MirrorB, order = 1, group = Fastest, output = Answer)]
    #[retry(MirrorB, max_delay_ms = 250, jitter = None)]
    #[custom_step(Check, order = 2, inputs(mirror_a, mirror_b))]
    #[condition(Check, request.tags.iter().any(|t| is_tag(t)) && fetch.files.len() < 10 && request.limit.unwrap_or(MAX) > 0)]
    #[file_upload(Reupload, order = 3, bucket = "a.b-c", source = fetch)]
    #[custom_step(Probe, order = 4, inputs(check), output = Data)]
    #[compensation(MirrorA)]
    pub(crate) struct Mirrors {
        pub(crate) salt: u64,
    }

    impl mirrors::Steps for Mirrors {
        async fn mirror_a(&self, _cx: &StepContext, input: mirrors::MirrorAInput<'_>) -> Result<Answer, StepError> {
            Ok(Answer(self.salt + input.fetch.files.len() as u64))
        }

        async fn compensate_mirror_a(
            &self,
            _cx: &StepContext,
            _request: &Request,
            _data: &Answer,
        ) -> Result<(), StepError> {
            Ok(())
        }

        async fn mirror_b(&self, cx: &StepContext, input: mirrors::MirrorBInput<'_>) -> Result<Answer, StepError> {
            cx.cancelled().await;
            Ok(Answer(input.request.limit.unwrap_or_default()))
        }

        async fn check(&self, _cx: &StepContext, input: mirrors::CheckInput<'_>) -> Result<(), StepError> {
            match (input.mirror_a, input.mirror_b) {
                (Some(_), _) | (_, Some(_)) => Ok(()),
                (None, None) => Err(StepError::permanent("no mirror answered")),
            }
        }

        async fn probe(&self, _cx: &StepContext, input: mirrors::ProbeInput<'_>) -> Result<Data, StepError> {
            Ok(Data(u8::from(input.check.is_some())))
        }

        fn response(&self, outputs: mirrors::Outputs<'_>) -> Result<Answer, StepError> {
            let _: &Data = outputs.probe;
            let _: &StoredObjects = outputs.reupload;
            let _: Option<&()> = outputs.check;
            outputs
                .mirror_a
                .or(outputs.mirror_b)
                .cloned()
                .ok_or_else(|| StepError::permanent("no mirror answered"))
        }
    }

    pub(crate) fn definition() -> &'static dtask::TaskDefinition {
        <Mirrors as Task>::definition()
    }
}

fn main() {
    let definition = jobs::definition();
    assert_eq!(definition.name, "race.mirrors-v2");
    assert!(!definition.groups[0].await_all);
    assert!(definition.encrypt_messages);
}
