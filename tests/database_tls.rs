//! TLS to PostgreSQL: `sslmode` and `sslrootcert` mean what they mean to
//! libpq. Against a private cluster with a certificate of our own CA, whose
//! database `tls_only` refuses connections in the clear (so reaching it
//! proves TLS, and being refused proves none).

use crate::harness::Manage;
use crate::private_cluster::PrivateCluster;
use crate::smtp::TestCert;

fn url(cluster: &PrivateCluster, host: &str, dbname: &str, params: &str) -> String {
    format!(
        "postgresql://postgres@{host}:{}/{dbname}{params}",
        cluster.port
    )
}

fn migrate(database_url: &str) -> crate::harness::Run {
    Manage::new()
        .env("DATABASE_URL", database_url)
        .arg("migrate")
        .run()
}

#[test]
fn require_and_the_default_prefer_encrypt_without_checking_the_certificate() {
    let cert = TestCert::new();
    let cluster = PrivateCluster::with_tls(&cert);
    // Our CA is in no system store: require and prefer do not care.
    for params in ["?sslmode=require", "", "?sslmode=prefer"] {
        let run = migrate(&url(&cluster, "127.0.0.1", "tls_only", params));
        assert_eq!(run.code, 0, "{params}: {run:?}");
    }
}

#[test]
fn verify_full_trusts_sslrootcert_and_checks_the_host_name() {
    let cert = TestCert::new();
    let cluster = PrivateCluster::with_tls(&cert);
    let ca = cert.ca_file.display().to_string();
    let trusted = url(
        &cluster,
        "localhost",
        "tls_only",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(migrate(&trusted).code, 0);

    // Without our CA the system's roots do not know the server: exit 1,
    // one line that says why and what to do.
    let untrusted = url(&cluster, "localhost", "tls_only", "?sslmode=verify-full");
    let run = migrate(&untrusted);
    assert_eq!(run.code, 1, "{run:?}");
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert!(
        error.contains("cannot connect to the database localhost:")
            && error.contains("not signed by any of the system's CA certificates")
            && error.contains("sslrootcert"),
        "{error}"
    );

    // A host name the certificate was not issued for: verify-full refuses,
    // verify-ca (the chain only) accepts.
    let elsewhere = |mode: &str| {
        format!(
            "host=elsewhere.invalid hostaddr=127.0.0.1 port={} user=postgres dbname=tls_only sslmode={mode} sslrootcert='{ca}'",
            cluster.port
        )
    };
    let run = migrate(&elsewhere("verify-full"));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("elsewhere.invalid"), "{}", run.stderr);
    assert_eq!(migrate(&elsewhere("verify-ca")).code, 0);
}

#[test]
fn disable_connects_in_the_clear_and_sockets_never_use_tls() {
    let cert = TestCert::new();
    let cluster = PrivateCluster::with_tls(&cert);
    assert_eq!(
        migrate(&url(&cluster, "127.0.0.1", "postgres", "?sslmode=disable")).code,
        0
    );
    // The TLS-only database refuses it: nothing was encrypted.
    let run = migrate(&url(&cluster, "127.0.0.1", "tls_only", "?sslmode=disable"));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no encryption"), "{}", run.stderr);
    // On the Unix socket TLS does not exist: even require connects (libpq).
    assert_eq!(migrate(&format!("{} sslmode=require", cluster.url)).code, 0);
}

#[test]
fn an_unknown_sslmode_is_bad_input() {
    Manage::new()
        .env("DATABASE_URL", "postgresql://localhost/x?sslmode=allow")
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["sslmode", "\"allow\"", "verify-full"]);
}
