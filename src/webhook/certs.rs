//! The webhook's own certificates, without cert-manager: a private CA and a serving certificate
//! it signs, kept in one Secret. This module only decides and issues (pure, given the time);
//! `rotation.rs` reads and writes the Secret and the ValidatingWebhookConfiguration.
//!
//! Rotation never leaves the API server without a CA it trusts: a new CA is added to the
//! bundle next to the old one (which stays until it expires), and the serving certificate is
//! re-issued from the newest CA only once that bundle is written.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

/// The keys of the Secret.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// A CA lives five years and is replaced in its last year, so the serving certificates it
/// signs (one year) never outlive it by much and the old CA is still valid while the new one
/// spreads.
const CA_LIFETIME: Duration = Duration::days(5 * 365);
const CA_RENEW_BEFORE: Duration = Duration::days(365);
/// Serving certificates are replaced 90 days before they expire: months of margin for a
/// leader that cannot write for a while.
const SERVING_LIFETIME: Duration = Duration::days(365);
const SERVING_RENEW_BEFORE: Duration = Duration::days(90);
/// Certificates start a little in the past: clocks of the API server and the pods differ.
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The PEM texts kept in the Secret. `ca_bundle` holds the current CA first, then an older one
/// that is still valid; it is what the webhook configuration's caBundle carries.
#[derive(Clone, PartialEq, Eq)]
pub struct CertSet {
    pub ca_bundle: String,
    pub ca_key: String,
    pub tls_cert: String,
    pub tls_key: String,
}

impl std::fmt::Debug for CertSet {
    // Private keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertSet").finish_non_exhaustive()
    }
}

/// The names the serving certificate must carry: the Service's DNS names and, for a webhook
/// reached by URL, the listen address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Subject {
    /// The DNS names of a Service `service` in `namespace`, as the API server addresses it.
    pub fn for_service(service: &str, namespace: &str) -> Subject {
        let dns_names = [
            service.to_owned(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
        .into();
        Subject {
            dns_names,
            ips: BTreeSet::new(),
        }
    }
}

/// What the stored certificates need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// A new serving certificate from the current CA (expiring, wrong names, not signed by the
    /// current CA, or unreadable).
    NewServing,
    /// A new CA (none, unreadable or expiring) and then a serving certificate from it.
    NewCa,
}

pub fn plan(stored: Option<&CertSet>, subject: &Subject, now: OffsetDateTime) -> Plan {
    let Some(stored) = stored else {
        return Plan::NewCa;
    };
    let ca_ders = pem_certs(&stored.ca_bundle);
    let Some(ca_der) = ca_ders.first() else {
        return Plan::NewCa;
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return Plan::NewCa;
    };
    if KeyPair::from_pem(&stored.ca_key).is_err() || expires_within(&ca, now, CA_RENEW_BEFORE) {
        return Plan::NewCa;
    }
    let serving_ok = pem_certs(&stored.tls_cert).first().is_some_and(|der| {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
            !expires_within(&cert, now, SERVING_RENEW_BEFORE)
                && cert.verify_signature(Some(ca.public_key())).is_ok()
                && &names_of(&cert) == subject
        })
    }) && KeyPair::from_pem(&stored.tls_key).is_ok();
    if serving_ok {
        Plan::Keep
    } else {
        Plan::NewServing
    }
}

/// Carries out `plan` on the stored set: the new set to store, or `None` for `Plan::Keep`.
pub fn issue(
    plan: Plan,
    stored: Option<&CertSet>,
    subject: &Subject,
    now: OffsetDateTime,
) -> Result<Option<CertSet>, CertError> {
    let (ca_bundle, ca_key) = match (plan, stored) {
        (Plan::Keep, _) => return Ok(None),
        (Plan::NewServing, Some(stored)) => (
            still_valid(&stored.ca_bundle, now, usize::MAX),
            stored.ca_key.clone(),
        ),
        (Plan::NewServing | Plan::NewCa, _) => {
            let (ca_pem, key_pem) = new_ca(now)?;
            // The old CA stays trusted while it is valid: replicas still serve its certificate
            // until they read the new one.
            let older = stored.map_or_else(String::new, |s| still_valid(&s.ca_bundle, now, 1));
            (ca_pem + &older, key_pem)
        }
    };
    let ca_key_pair = KeyPair::from_pem(&ca_key)?;
    let newest_ca = pem_certs(&ca_bundle)
        .into_iter()
        .next()
        .ok_or(rcgen::Error::CouldNotParseCertificate)?;
    let issuer = Issuer::from_ca_cert_der(&newest_ca, ca_key_pair)?;
    let ca_not_after = x509_parser::parse_x509_certificate(&newest_ca)
        .map(|(_, ca)| ca.validity().not_after.to_datetime())
        .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "nodeboot admission webhook");
    params.not_before = now - BACKDATE;
    params.not_after = (now + SERVING_LIFETIME).min(ca_not_after);
    params.subject_alt_names = subject
        .dns_names
        .iter()
        .map(|d| d.clone().try_into().map(SanType::DnsName))
        .chain(subject.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Some(CertSet {
        ca_bundle,
        ca_key,
        tls_cert: cert.pem(),
        tls_key: key.serialize_pem(),
    }))
}

fn new_ca(now: OffsetDateTime) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // The time in the name keeps two generations of CA apart in the bundle and in logs.
    params.distinguished_name.push(
        DnType::CommonName,
        format!("nodeboot webhook CA {}", now.unix_timestamp()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificates of a PEM text, in order; unreadable blocks are skipped.
pub fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// At most `limit` certificates of `bundle` that have not expired, as PEM.
fn still_valid(bundle: &str, now: OffsetDateTime, limit: usize) -> String {
    pem_certs(bundle)
        .into_iter()
        .filter(|der| {
            x509_parser::parse_x509_certificate(der)
                .is_ok_and(|(_, c)| c.validity().not_after.to_datetime() > now)
        })
        .take(limit)
        .map(|der| pem_block(&der))
        .collect()
}

/// One certificate as PEM. (The PEM readers at hand only read; rcgen writes only what it
/// issued itself, and this re-writes certificates read back from the Secret.)
fn pem_block(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn expires_within(cert: &X509Certificate<'_>, now: OffsetDateTime, margin: Duration) -> bool {
    cert.validity().not_after.to_datetime() - margin <= now
}

/// Is this serving certificate usable now (a replica serves nothing expired or not yet valid)?
pub fn currently_valid(cert_pem: &str, now: OffsetDateTime) -> bool {
    pem_certs(cert_pem).first().is_some_and(|der| {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
            c.validity().not_before.to_datetime() <= now
                && now < c.validity().not_after.to_datetime()
        })
    })
}

fn names_of(cert: &X509Certificate<'_>) -> Subject {
    let mut subject = Subject::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    subject.dns_names.insert((*d).to_owned());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    subject.ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        let mut s = Subject::for_service("nodeboot-webhook", "boot");
        s.ips.insert("127.0.0.1".parse().unwrap());
        s
    }

    fn fresh(now: OffsetDateTime) -> CertSet {
        issue(Plan::NewCa, None, &subject(), now).unwrap().unwrap()
    }

    #[test]
    fn nothing_stored_means_a_new_ca_and_then_nothing_to_do() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(plan(None, &subject(), now), Plan::NewCa);
        let set = fresh(now);
        assert_eq!(pem_certs(&set.ca_bundle).len(), 1);
        assert_eq!(plan(Some(&set), &subject(), now), Plan::Keep);
        assert!(currently_valid(&set.tls_cert, now));
    }

    #[test]
    fn a_serving_certificate_near_its_end_is_reissued_from_the_same_ca() {
        let now = OffsetDateTime::now_utc();
        let set = fresh(now);
        let later = now + SERVING_LIFETIME - SERVING_RENEW_BEFORE + Duration::days(1);
        assert_eq!(plan(Some(&set), &subject(), later), Plan::NewServing);
        let renewed = issue(Plan::NewServing, Some(&set), &subject(), later)
            .unwrap()
            .unwrap();
        assert_eq!(renewed.ca_bundle, set.ca_bundle);
        assert_ne!(renewed.tls_cert, set.tls_cert);
        assert_eq!(plan(Some(&renewed), &subject(), later), Plan::Keep);
    }

    #[test]
    fn a_new_ca_keeps_the_old_one_in_the_bundle_while_it_is_valid() {
        let now = OffsetDateTime::now_utc();
        let set = fresh(now);
        let later = now + CA_LIFETIME - CA_RENEW_BEFORE + Duration::days(1);
        assert_eq!(plan(Some(&set), &subject(), later), Plan::NewCa);
        let renewed = issue(Plan::NewCa, Some(&set), &subject(), later)
            .unwrap()
            .unwrap();
        let bundle = pem_certs(&renewed.ca_bundle);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[1], pem_certs(&set.ca_bundle)[0]);
        assert_eq!(plan(Some(&renewed), &subject(), later), Plan::Keep);
        // Once the old CA has expired, the next issue drops it.
        let much_later = now + CA_LIFETIME + Duration::days(1);
        let next = issue(Plan::NewServing, Some(&renewed), &subject(), much_later)
            .unwrap()
            .unwrap();
        assert_eq!(pem_certs(&next.ca_bundle).len(), 1);
    }

    #[test]
    fn other_names_or_a_foreign_signature_mean_a_new_serving_certificate() {
        let now = OffsetDateTime::now_utc();
        let set = fresh(now);
        let other = Subject::for_service("elsewhere", "boot");
        assert_eq!(plan(Some(&set), &other, now), Plan::NewServing);
        let foreign = fresh(now);
        let mixed = CertSet {
            tls_cert: foreign.tls_cert,
            tls_key: foreign.tls_key,
            ..set
        };
        assert_eq!(plan(Some(&mixed), &subject(), now), Plan::NewServing);
    }

    #[test]
    fn garbage_in_the_secret_means_starting_over() {
        let now = OffsetDateTime::now_utc();
        let garbage = CertSet {
            ca_bundle: "not a certificate".into(),
            ca_key: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        };
        assert_eq!(plan(Some(&garbage), &subject(), now), Plan::NewCa);
        assert!(!currently_valid("", now));
    }
}
