//! A private CA and a server certificate signed by it, for HTTPS test servers that the proxy
//! must trust through that CA alone.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEMs of the CA's certificate and of the server's certificate and key.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A new CA named "`name` CA", and a certificate named `name` for `hosts` signed by it.
pub fn test_pki(name: &str, hosts: &[&str]) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA cert");
    let server_key = KeyPair::generate().expect("server key");
    let hosts = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(hosts).expect("server params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&server_key, &ca).expect("server cert");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: server_key.serialize_pem(),
    }
}
