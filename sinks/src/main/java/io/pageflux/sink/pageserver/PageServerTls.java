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
import javax.net.ssl.TrustManagerFactory;

/**
 * TLS contexts for the page server and its clients, on the JDK's TLS stack, from PKCS#12 key
 * stores as {@code keytool} makes them (see the README for a copy-paste throw-away CA).
 */
public final class PageServerTls {

    private PageServerTls() {
    }

    /**
     * A server context: {@code keyStore} holds the server's private key and certificate chain. With
     * a {@code trustStore} (the CA that signs client certificates) clients must present a
     * certificate it trusts (mutual TLS, as CRIU's page server requires); without, any client
     * may connect (encryption only).
     *
     * @throws PageServerException naming the file when a store cannot be read
     */
    public static SslContext server(Path keyStore, char[] password, Path trustStore) {
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
     * A client context: {@code trustStore} holds the CA that signed the server's certificate (the
     * certificate must name the host the client connects to); {@code keyStore}, if not null, the
     * client's own key and certificate for servers that require one.
     *
     * @throws PageServerException naming the file when a store cannot be read
     */
    public static SslContext client(Path trustStore, char[] password, Path keyStore) {
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
