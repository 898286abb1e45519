//! Every recorded evidence file that trustee's verifiers deserialize parses into this
//! crate's types and re-serializes to the same JSON (or, for binary reports and quotes, the
//! same bytes). A file added to `tests/data/evidence` without a check here fails the test.

#![cfg(feature = "all-attesters")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use attester::{
    az_tpm_quote_from_bincode, csv_evidence_from_report, parse_snp_report, AzSnpVtpmEvidence,
    AzTdxVtpmEvidence, AzTpmQuote, CcaEvidence, CsvEvidence, HclReport, HclReportType, SgxEvidence,
    SnpEvidence, TdQuote, TdReport, TdxEvidence, TpmEvidence,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use sev::{
    firmware::host::{CertTableEntry, CertType},
    parser::ByteParser,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(DIR).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Parses into `T` and re-serializes to the very same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let recorded = json(name);
    let parsed: T =
        serde_json::from_value(recorded.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), recorded, "{name}");
    parsed
}

/// Wraps bytes as evidence of type `T`, round-trips it through JSON, returns the bytes again.
fn through_json<T: DeserializeOwned + Serialize>(evidence: T) -> T {
    let value = serde_json::to_value(&evidence).unwrap();
    serde_json::from_value(value).unwrap()
}

fn tdx_quote(name: &str) {
    let quote = bytes(name);
    let parsed = TdQuote::parse(&quote).unwrap();
    assert!(matches!(parsed.version(), 4 | 5), "{name}");
    let evidence = through_json(TdxEvidence {
        cc_eventlog: None,
        quote: STANDARD.encode(&quote),
    });
    assert_eq!(STANDARD.decode(evidence.quote).unwrap(), quote, "{name}");
}

fn snp_report(report: &str, certificate: &str) {
    let raw = bytes(report);
    let der = bytes(certificate);
    let parsed = parse_snp_report(&raw).unwrap();
    assert_eq!(parsed.to_bytes().unwrap().to_vec(), raw, "{report}");
    let evidence = SnpEvidence {
        attestation_report: parsed,
        cert_chain: Some(vec![CertTableEntry::new(CertType::VCEK, der.clone())]),
    };
    let again = through_json(evidence.clone());
    assert_eq!(again, evidence);
    assert_eq!(again.attestation_report.to_bytes().unwrap().to_vec(), raw);
    assert_eq!(again.cert_chain.unwrap()[0].data(), &der[..]);
}

fn hcl(name: &str, kind: HclReportType) {
    let raw = bytes(name);
    let report = HclReport::parse(raw.clone()).unwrap();
    assert_eq!(report.report_type(), kind, "{name}");
    assert_eq!(report.as_bytes(), &raw[..]);
}

#[test]
fn every_recorded_evidence_file_round_trips() {
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    let mut check = |name: &'static str, f: &dyn Fn()| {
        f();
        checked.insert(name);
    };

    // TDX
    for name in ["tdx_quote_4.dat", "tdx_quote_5.dat", "tdx_quote_6.dat"] {
        check(name, &|| tdx_quote(name));
    }
    check("parse_tdx_claims_expected.json", &|| {
        let claims = json("parse_tdx_claims_expected.json");
        let quote = bytes("tdx_quote_4.dat");
        let parsed = TdQuote::parse(&quote).unwrap();
        assert_eq!(hex::encode(parsed.report_data()), claims["report_data"]);
        assert_eq!(hex::encode(parsed.mr_config_id()), claims["init_data"]);
    });
    check("tdx_report_1.bin", &|| {
        let raw = bytes("tdx_report_1.bin");
        assert_eq!(TdReport::parse(&raw).unwrap().as_bytes(), &raw[..]);
    });

    // SEV-SNP
    check("snp/test-report.bin", &|| {
        snp_report("snp/test-report.bin", "snp/test-vcek.der")
    });
    check("snp/test-vcek.der", &|| {
        assert_eq!(bytes("snp/test-vcek.der")[0], 0x30)
    });
    check("snp/test-vlek-report.bin", &|| {
        snp_report("snp/test-vlek-report.bin", "snp/test-vlek.der")
    });
    check("snp/test-vlek.der", &|| {
        assert_eq!(bytes("snp/test-vlek.der")[0], 0x30)
    });

    // Azure
    for name in [
        "az-snp-vtpm/evidence-v1.json",
        "az-snp-vtpm/evidence-v2.json",
    ] {
        check(name, &|| {
            let evidence: AzSnpVtpmEvidence = round_trip(name);
            assert_eq!(
                HclReport::parse(evidence.hcl_report).unwrap().report_type(),
                HclReportType::Snp
            );
        });
    }
    check("az-snp-vtpm/hcl-report.bin", &|| {
        hcl("az-snp-vtpm/hcl-report.bin", HclReportType::Snp)
    });
    check("az-snp-vtpm/tpm-quote-v1.json", &|| {
        let quote: AzTpmQuote = round_trip("az-snp-vtpm/tpm-quote-v1.json");
        assert_eq!(quote.pcrs.len(), 24);
    });
    check("az-snp-vtpm/quote.bin", &|| {
        let quote = az_tpm_quote_from_bincode(&bytes("az-snp-vtpm/quote.bin")).unwrap();
        assert_eq!(
            serde_json::to_value(quote).unwrap(),
            json("az-snp-vtpm/tpm-quote-v1.json")
        );
    });
    check("az-snp-vtpm/vcek.pem", &|| {
        let pem = String::from_utf8(bytes("az-snp-vtpm/vcek.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    });
    check("az-tdx-vtpm/evidence-v1.json", &|| {
        let evidence: AzTdxVtpmEvidence = round_trip("az-tdx-vtpm/evidence-v1.json");
        assert_eq!(evidence.hcl_report, bytes("az-tdx-vtpm/hcl-report.bin"));
        assert_eq!(evidence.td_quote, bytes("az-tdx-vtpm/td-quote.bin"));
    });
    check("az-tdx-vtpm/hcl-report.bin", &|| {
        hcl("az-tdx-vtpm/hcl-report.bin", HclReportType::Tdx)
    });
    check("az-tdx-vtpm/td-quote.bin", &|| {
        tdx_quote("az-tdx-vtpm/td-quote.bin")
    });

    // TPM, CSV, CCA, SGX
    check("tpm_evidence.json", &|| {
        let evidence: TpmEvidence = round_trip("tpm_evidence.json");
        assert_eq!(evidence.tpm_quote.pcrs.len(), 24);
    });
    check("csv_evidence.json", &|| {
        let evidence: CsvEvidence = round_trip("csv_evidence.json");
        let rebuilt = csv_evidence_from_report(
            &evidence.attestation_report.data,
            evidence.cc_eventlog.clone(),
        )
        .unwrap();
        assert_eq!(rebuilt, evidence);
    });
    check("cca/cca-example-token.cbor", &|| {
        let token = bytes("cca/cca-example-token.cbor");
        let evidence = through_json(CcaEvidence {
            token: token.clone(),
        });
        assert_eq!(evidence.token, token);
    });
    check("occlum_quote.dat", &|| {
        let quote = bytes("occlum_quote.dat");
        let evidence = through_json(SgxEvidence {
            quote: STANDARD.encode(&quote),
        });
        assert_eq!(STANDARD.decode(evidence.quote).unwrap(), quote);
    });

    // every file of the directory was checked
    let mut present = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from(DIR)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                present.insert(
                    path.strip_prefix(DIR)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let checked: BTreeSet<String> = checked.into_iter().map(str::to_string).collect();
    assert_eq!(present, checked, "files without a round-trip check");
}
