/// A test certificate authority and a server certificate it signed for 127.0.0.1 (and localhost), valid until
/// 2046: for tests of TLS endpoints (an `https://` Manager). Generated once with openssl (EC P-256); test use
/// only, the private key is public.
public enum TestCertificates {
    /// The CA's certificate: a client trusts the server when given this as a trust root.
    public static let caPEM = """
-----BEGIN CERTIFICATE-----
MIIBozCCAUmgAwIBAgIUUR8NkAWlztN6Rya85AF5bU/PXi8wCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUc3dpZnQtaW5sb25nIHRlc3QgQ0EwHhcNMjYxMTI5MDYyNjA1
WhcNNDYxMTI0MDYyNjA1WjAfMR0wGwYDVQQDDBRzd2lmdC1pbmxvbmcgdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIAw7mrkzCuuZoIov2PO/5s3gCo1
9nzI6IBS4ndS1+IH8OLxfdJxEz0IxBKbp8bj+DKWpY2/LPz6xS7zACpB99ijYzBh
MB0GA1UdDgQWBBQ2a1vGun48yZn0huJVMBXBS3zXHjAfBgNVHSMEGDAWgBQ2a1vG
un48yZn0huJVMBXBS3zXHjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB
BjAKBggqhkjOPQQDAgNIADBFAiAJHT1ufHX1oclPD/Ihg8vHhcPg2V/NTAN1RJvX
Y/zTWwIhAJ6WAM6wOENVoXW5IubSG90kUFXjjx0mN9/AbOEu2Giv
-----END CERTIFICATE-----
"""

    /// The server's certificate, signed by the CA.
    public static let serverCertificatePEM = """
-----BEGIN CERTIFICATE-----
MIIBsjCCAVmgAwIBAgIUDtS3u0x+98fHIMn2OFuoiJ18F+QwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUc3dpZnQtaW5sb25nIHRlc3QgQ0EwHhcNMjYxMTI5MDYyNjA1
WhcNNDYxMTI0MDYyNjA1WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAARw2rgkKIRWr5UYJRn/6vb3VjH5rxUAQOHp1b6T54C/
9EFPdBl/RmSEoQAwzsv7BLit25n2MuzZ/PRQ4GtaTebMo34wfDAaBgNVHREEEzAR
hwR/AAABgglsb2NhbGhvc3QwCQYDVR0TBAIwADATBgNVHSUEDDAKBggrBgEFBQcD
ATAdBgNVHQ4EFgQUvirCETIoKw3fpFdXSppV3DtJXMMwHwYDVR0jBBgwFoAUNmtb
xrp+PMmZ9IbiVTAVwUt81x4wCgYIKoZIzj0EAwIDRwAwRAIgUypIwQt4msyPsb32
aKBSEsRsJqW60fodsD1eFlPMU4ACID9ilMaIncRf2m1dUrD/kQhqgnNrwPmD4r/R
BfsC3Hhs
-----END CERTIFICATE-----
"""

    /// The server's private key (PKCS#8).
    public static let serverKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTDXjUwMiuQLeXEIl
4BFC14cV3MvdT5Psk3MifPxHRPehRANCAARw2rgkKIRWr5UYJRn/6vb3VjH5rxUA
QOHp1b6T54C/9EFPdBl/RmSEoQAwzsv7BLit25n2MuzZ/PRQ4GtaTebM
-----END PRIVATE KEY-----
"""
}
