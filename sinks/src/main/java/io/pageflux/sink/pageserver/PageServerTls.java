package io.pageflux.sink.pageserver;

import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLException;
import javax.net.ssl.TrustManagerFactory;

/**
 * TLS contexts for the page server and its clients, on the JDK's TLS stack, from PEM files
 * (as {@code openssl} and CRIU's {@code --tls-cacert/--tls-cert/--tls-key} use them) or from
 * PKCS#12 key stores (as {@code keytool} makes them). See the README for a throw-away CA.
 *
 * <p>A client always checks that the server's certificate names the host it connects to
 * (subjectAltName IP or DNS entry), as CRIU does.
 */
public final class PageServerTls {

    private PageServerTls() {
    }

    /**
     * A server context from PEM files: the server's certificate (chain) and its PKCS#8 private
     * key ({@code BEGIN PRIVATE KEY}). With {@code caCert} (the CA that signs client
     * certificates) clients must present a certificate it signed — mutual TLS, as CRIU's page
     * server requires; with {@code null} any client may connect (encryption only).
     *
     * @throws PageServerException naming the files when they cannot be used
     */
    public static SslContext serverFromPem(Path cert, Path key, Path caCert) {
        try {
            SslContextBuilder b = SslContextBuilder.forServer(cert.toFile(), key.toFile()).sslProvider(SslProvider.JDK);
            if (caCert != null) {
                b.trustManager(caCert.toFile()).clientAuth(ClientAuth.REQUIRE);
            }
            return b.build();
        } catch (SSLException | IllegalArgumentException e) {
            throw new PageServerException("cannot set up TLS for the page server: cert=" + cert + " key=" + key
                    + " cacert=" + caCert + " cause=" + e + "; the key must be an unencrypted PKCS#8 PEM"
                    + " (BEGIN PRIVATE KEY) matching the certificate", e);
        }
    }

    /**
     * A client context from PEM files: {@code caCert} signed the server's certificate; {@code cert}
     * and {@code key} (both or neither) are the client's own, for servers that require one.
     *
     * @throws PageServerException naming the files when they cannot be used
     */
    public static SslContext clientFromPem(Path caCert, Path cert, Path key) {
        try {
            SslContextBuilder b = SslContextBuilder.forClient().sslProvider(SslProvider.JDK).trustManager(caCert.toFile());
            if (cert != null || key != null) {
                b.keyManager(cert.toFile(), key.toFile());
            }
            return b.build();
        } catch (SSLException | IllegalArgumentException | NullPointerException e) {
            throw new PageServerException("cannot set up TLS for the page server client: cacert=" + caCert + " cert="
                    + cert + " key=" + key + " cause=" + e + "; give both cert and key, the key as an unencrypted"
                    + " PKCS#8 PEM (BEGIN PRIVATE KEY)", e);
        }
    }

    /**
     * A server context from PKCS#12 stores: {@code keyStore} holds the server's key and certificate
     * chain; with a {@code trustStore} (holding the CA that signs client certificates) client
     * certificates are required. Both stores use {@code password}.
     */
    public static SslContext serverFromKeyStore(Path keyStore, char[] password, Path trustStore) {
        try {
            SslContextBuilder b = SslContextBuilder.forServer(keyManagers(keyStore, password)).sslProvider(SslProvider.JDK);
            if (trustStore != null) {
                b.trustManager(trustManagers(trustStore, password)).clientAuth(ClientAuth.REQUIRE);
            }
            return b.build();
        } catch (IOException | GeneralSecurityException e) {
            throw new PageServerException("cannot set up TLS for the page server: keystore=" + keyStore
                    + " truststore=" + trustStore + " cause=" + e + "; check the files and the password", e);
        }
    }

    /**
     * A client context from PKCS#12 stores: {@code trustStore} holds the CA that signed the
     * server's certificate; {@code keyStore}, if not null, the client's key and certificate.
     */
    public static SslContext clientFromKeyStore(Path trustStore, char[] password, Path keyStore) {
        try {
            SslContextBuilder b = SslContextBuilder.forClient().sslProvider(SslProvider.JDK)
                    .trustManager(trustManagers(trustStore, password));
            if (keyStore != null) {
                b.keyManager(keyManagers(keyStore, password));
            }
            return b.build();
        } catch (IOException | GeneralSecurityException e) {
            throw new PageServerException("cannot set up TLS for the page server client: truststore=" + trustStore
                    + " keystore=" + keyStore + " cause=" + e + "; check the files and the password", e);
        }
    }

    private static KeyStore load(Path file, char[] password) throws IOException, GeneralSecurityException {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(file)) {
            ks.load(in, password);
        }
        return ks;
    }

    private static KeyManagerFactory keyManagers(Path file, char[] password) throws IOException, GeneralSecurityException {
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(load(file, password), password);
        return kmf;
    }

    private static TrustManagerFactory trustManagers(Path file, char[] password)
            throws IOException, GeneralSecurityException {
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(load(file, password));
        return tmf;
    }
}
