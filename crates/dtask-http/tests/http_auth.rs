//! Authentication: JWT bearer tokens (HS256, RS256/PS256 and ES256 from
//! PEM keys, RS256 from a JWKS document) and API keys, made by an
//! independent library (PyJWT, `support/tokens.py`); every refusal is a
//! `401` problem with `WWW-Authenticate: Bearer`.

mod support;

use dtask_http::{ApiKeys, Authenticator, JwtVerifier, PROBLEM_CONTENT_TYPE};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use support::TestServer;
use support::tokens::{AUDIENCE, ISSUER, SECRET, tokens};

const API_KEY: &str = "mk_live_0123456789abcdefghijklmnopqrstuv";

fn hs256() -> JwtVerifier {
    JwtVerifier::hs256(SECRET.as_bytes())
        .unwrap()
        .audience(AUDIENCE)
        .issuer(ISSUER)
}

async fn server(verifier: JwtVerifier) -> TestServer {
    let keys = ApiKeys::parse(&format!("{} ci-bot uploader", ApiKeys::hash(API_KEY))).unwrap();
    let auth = Authenticator::default().jwt(verifier).api_keys(keys);
    TestServer::with_auth(auth, |b| b, |api| api).await
}

/// Lists the caller's tasks with `header`; returns the status, the
/// challenge and the problem's detail.
async fn list_with(server: &TestServer, header: Option<(&str, String)>) -> (u16, Option<String>, String) {
    let mut request = server.client.get(server.url("/api/tasks"));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    if status == 401 {
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        challenge,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some((AUTHORIZATION.as_str(), format!("Bearer {token}")))
}

#[tokio::test]
async fn every_bad_hs256_token_is_refused_with_a_reason() {
    let server = server(hs256()).await;
    let (status, challenge, _) = list_with(&server, None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"dtask\""));
    let refused = [
        ("hs256_expired", "expired"),
        ("hs256_not_yet_valid", "not valid yet"),
        ("hs256_wrong_secret", "signature"),
        ("hs256_wrong_audience", "audience"),
        ("hs256_wrong_issuer", "issuer"),
        ("hs256_no_exp", "`exp`"),
        ("hs256_no_sub", "`sub`"),
        ("none", "algorithm"),
        ("rs256", "no accepted key"),
    ];
    for (case, reason) in refused {
        let (status, challenge, detail) = list_with(&server, bearer(tokens().get(case))).await;
        assert_eq!(status, 401, "{case}: {detail}");
        let challenge = challenge.unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{case}: {challenge}");
        assert!(detail.contains(reason), "{case}: {detail:?} does not say {reason:?}");
    }
    let (status, _, detail) = list_with(&server, bearer(tokens().get("hs256"))).await;
    assert_eq!(status, 200, "{detail}");
}

#[tokio::test]
async fn rsa_and_ec_public_keys_verify_their_tokens_and_refuse_algorithm_confusion() {
    let rsa = server(
        JwtVerifier::public_key_pem(tokens().rsa_public_pem.as_bytes())
            .unwrap()
            .audience(AUDIENCE),
    )
    .await;
    for case in ["rs256", "ps256"] {
        let (status, _, detail) = list_with(&rsa, bearer(tokens().get(case))).await;
        assert_eq!(status, 200, "{case}: {detail}");
    }
    for case in ["hs256_confused_with_rsa_pem", "hs256", "es256", "none"] {
        let (status, _, detail) = list_with(&rsa, bearer(tokens().get(case))).await;
        assert_eq!(status, 401, "{case} accepted by an RSA key");
        assert!(
            detail.contains("algorithm") || detail.contains("no accepted key"),
            "{case}: {detail}"
        );
    }
    let ec = server(
        JwtVerifier::public_key_pem(tokens().ec_public_pem.as_bytes())
            .unwrap()
            .audience(AUDIENCE),
    )
    .await;
    assert_eq!(list_with(&ec, bearer(tokens().get("es256"))).await.0, 200);
    assert_eq!(list_with(&ec, bearer(tokens().get("rs256"))).await.0, 401);
}

#[tokio::test]
async fn a_jwks_document_picks_the_key_by_kid() {
    let server = server(JwtVerifier::jwks(&tokens().jwks).unwrap().audience(AUDIENCE)).await;
    assert_eq!(list_with(&server, bearer(tokens().get("rs256_kid"))).await.0, 200);
    for case in ["rs256_unknown_kid", "rs256_other_key", "rs256", "hs256"] {
        let (status, _, detail) = list_with(&server, bearer(tokens().get(case))).await;
        assert_eq!(status, 401, "{case} accepted: {detail}");
    }
}

#[tokio::test]
async fn api_keys_authenticate_in_either_header_and_unknown_ones_are_refused() {
    let server = server(hs256()).await;
    assert_eq!(list_with(&server, bearer(API_KEY)).await.0, 200);
    assert_eq!(list_with(&server, Some(("x-api-key", API_KEY.to_owned()))).await.0, 200);
    let (status, _, detail) = list_with(&server, Some(("x-api-key", "guessed".to_owned()))).await;
    assert_eq!((status, detail.as_str()), (401, "the API key is not known"));
    let (status, _, _) = list_with(&server, Some((AUTHORIZATION.as_str(), "Basic YWxpY2U6cHc=".to_owned()))).await;
    assert_eq!(status, 401, "only Bearer credentials are accepted");
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document_stay_open() {
    let server = server(hs256()).await;
    for path in ["/healthz", "/readyz", "/api/openapi.json"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let document: serde_json::Value = server
        .client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKeyHeader"]["name"], "X-Api-Key");
    assert_eq!(document["paths"]["/healthz"]["get"]["security"], serde_json::json!([]));
    assert!(document["paths"]["/api/tasks"]["get"]["responses"]["401"].is_object());
}
