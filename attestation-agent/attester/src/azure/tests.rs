use serde_json::Value;

use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).expect("recorded vector")
}

fn json_vector(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap()
}

#[test]
fn recorded_az_snp_evidence_round_trips() {
    for name in [
        "az-snp-vtpm/evidence-v1.json",
        "az-snp-vtpm/evidence-v2.json",
    ] {
        let recorded = json_vector(name);
        let evidence: AzSnpVtpmEvidence = serde_json::from_value(recorded.clone()).unwrap();
        assert_eq!(serde_json::to_value(&evidence).unwrap(), recorded, "{name}");
        assert_eq!(evidence.tpm_quote.pcrs.len(), 24);
        assert_eq!(evidence.tpm_quote.signature.len(), 256);
        let report = HclReport::parse(evidence.hcl_report.clone()).unwrap();
        assert_eq!(report.report_type(), HclReportType::Snp);
        assert_eq!(evidence.vcek[0], 0x30, "DER certificate");
    }
    let v2 = json_vector("az-snp-vtpm/evidence-v2.json");
    assert_eq!(v2["version"], 2);
}

#[test]
fn recorded_az_tdx_evidence_round_trips() {
    let recorded = json_vector("az-tdx-vtpm/evidence-v1.json");
    let evidence: AzTdxVtpmEvidence = serde_json::from_value(recorded.clone()).unwrap();
    assert_eq!(serde_json::to_value(&evidence).unwrap(), recorded);
    assert_eq!(evidence.hcl_report, read("az-tdx-vtpm/hcl-report.bin"));
    assert_eq!(evidence.td_quote, read("az-tdx-vtpm/td-quote.bin"));
    let report = HclReport::parse(evidence.hcl_report.clone()).unwrap();
    assert_eq!(report.report_type(), HclReportType::Tdx);
}

#[test]
fn recorded_quotes_agree_in_both_encodings() {
    let bincode = read("az-snp-vtpm/quote.bin");
    let recorded = json_vector("az-snp-vtpm/tpm-quote-v1.json");
    let quote = quote_from_bincode(&bincode).unwrap();
    assert_eq!(serde_json::to_value(&quote).unwrap(), recorded);
    let parsed: AzTpmQuote = serde_json::from_value(recorded).unwrap();
    assert_eq!(parsed, quote);
    assert!(quote_from_bincode(&bincode[..bincode.len() - 1]).is_err());
    let mut trailing = bincode.clone();
    trailing.push(0);
    assert!(quote_from_bincode(&trailing).is_err());
    let mut huge = bincode;
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(quote_from_bincode(&huge).is_err());
}

#[test]
fn malformed_evidence_fields_are_refused() {
    let bad_hex = serde_json::json!({"signature": "zz", "message": "", "pcrs": []});
    assert!(serde_json::from_value::<AzTpmQuote>(bad_hex).is_err());
    let bad_b64 = serde_json::json!({
        "version": 2,
        "tpm_quote": {"signature": "", "message": "", "pcrs": []},
        "hcl_report": "***",
        "vcek": ""
    });
    assert!(serde_json::from_value::<AzSnpVtpmEvidence>(bad_b64).is_err());
    let wrong_type = serde_json::json!({
        "version": "2",
        "tpm_quote": {"signature": "", "message": "", "pcrs": []},
        "hcl_report": "",
        "td_quote": ""
    });
    assert!(serde_json::from_value::<AzTdxVtpmEvidence>(wrong_type).is_err());
    // unpadded base64url is accepted on input, output is padded
    let unpadded = serde_json::json!({
        "version": 2,
        "tpm_quote": {"signature": "", "message": "", "pcrs": []},
        "hcl_report": "AQ",
        "td_quote": "AQI="
    });
    let evidence: AzTdxVtpmEvidence = serde_json::from_value(unpadded).unwrap();
    assert_eq!(evidence.hcl_report, vec![1]);
    assert_eq!(
        serde_json::to_value(&evidence).unwrap()["hcl_report"],
        "AQ=="
    );
}
