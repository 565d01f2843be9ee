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

    /// A second CA, for client certificates (mutual TLS): a server that requires them trusts this one.
    public static let clientCAPEM = """
-----BEGIN CERTIFICATE-----
MIIBsTCCAVegAwIBAgIUKXtH+hCfkq0Ubd451O/gXUyOLuowCgYIKoZIzj0EAwIw
JjEkMCIGA1UEAwwbc3dpZnQtaW5sb25nIHRlc3QgY2xpZW50IENBMB4XDTI2MTIw
NjAzNDEzNVoXDTQ2MTIwMTAzNDEzNVowJjEkMCIGA1UEAwwbc3dpZnQtaW5sb25n
IHRlc3QgY2xpZW50IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKr0tY3Er
mtK5DIULl8j6RhGIhyFFm1KqhR1bPQaPnkkquRbSdjTP7VLZW4zlVLt33BoaS/nb
3gmblgdioRRls6NjMGEwHQYDVR0OBBYEFBT7KLgy0Zs4erqaWmqz6nsQ6eu5MB8G
A1UdIwQYMBaAFBT7KLgy0Zs4erqaWmqz6nsQ6eu5MA8GA1UdEwEB/wQFMAMBAf8w
DgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49BAMCA0gAMEUCIQCALNKtOpy3JULZ3fkv
jIB/lTewguRRKFG9XIs7OyenVQIgQQvquLdfjr5wCwBcbO0DCfFavsEbx8FIyAfm
merdeJw=
-----END CERTIFICATE-----
"""

    /// A client certificate (extended key usage `clientAuth`) signed by the client CA.
    public static let clientCertificatePEM = """
-----BEGIN CERTIFICATE-----
MIIBrTCCAVOgAwIBAgIUWPnxeq18jO0a4a9Xk/Pf65lH8fMwCgYIKoZIzj0EAwIw
JjEkMCIGA1UEAwwbc3dpZnQtaW5sb25nIHRlc3QgY2xpZW50IENBMB4XDTI2MTIw
NjAzNDEzNloXDTQ2MTIwMTAzNDEzNlowIzEhMB8GA1UEAwwYc3dpZnQtaW5sb25n
IHRlc3QgY2xpZW50MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEO7UxNY4fuGT2
iAC8uFjrJBTvEL/fT0EvYQ6DPzH2Bu5dtNZSANICkJYmf9zY4dARHaYnj9s295Yi
pQ9iq1S49qNiMGAwCQYDVR0TBAIwADATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNV
HQ4EFgQUi2qYucFAcVVSKZWjU9ttvNPYEgMwHwYDVR0jBBgwFoAUFPsouDLRmzh6
uppaarPqexDp67kwCgYIKoZIzj0EAwIDSAAwRQIgBiTUSB6IiOFbPal+NEa9fMxa
PH9T2RaI8z7O8H6bJ0wCIQC18blnW61QIxaBaanBo6Lr0uriLXRyxfh5HFaXlxAN
zA==
-----END CERTIFICATE-----
"""

    /// The client certificate's private key (PKCS#8).
    public static let clientKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8HnyPehKtPGMobBX
Bj+Drwkf9VoWcXky+T7+XbjPPkyhRANCAAQ7tTE1jh+4ZPaIALy4WOskFO8Qv99P
QS9hDoM/MfYG7l201lIA0gKQliZ/3Njh0BEdpieP2zb3liKlD2KrVLj2
-----END PRIVATE KEY-----
"""
}
