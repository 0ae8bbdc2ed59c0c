package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.pageflux.source.metrics.BufferPoolMetrics;
import java.io.File;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class BufferPoolMetricsTest {

    @Test
    void metersFollowThePool() {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(192), DataSize.ofKibibytes(64));
        MeterRegistry registry = new SimpleMeterRegistry();
        new BufferPoolMetrics(pool, Tags.of("dump", "t1")).bindTo(registry);

        PooledBuffer a = pool.tryAcquire();
        PooledBuffer b = pool.tryAcquire();
        assertEquals(2.0, gauge(registry, "pageflux.pool.leased"));
        assertEquals(128 * 1024.0, gauge(registry, "pageflux.pool.leased.bytes"));
        a.release();
        pool.recordWait();
        pool.recordWait();
        assertEquals(1.0, gauge(registry, "pageflux.pool.leased"));
        assertEquals(2.0, gauge(registry, "pageflux.pool.peak"));
        assertEquals(128 * 1024.0, gauge(registry, "pageflux.pool.peak.bytes"));
        assertEquals(3.0, gauge(registry, "pageflux.pool.capacity"));
        assertEquals(192 * 1024.0, gauge(registry, "pageflux.pool.capacity.bytes"));
        assertEquals(2.0, registry.get("pageflux.pool.waits").tag("dump", "t1").functionCounter().count());
        assertEquals(2.0, registry.get("pageflux.pool.acquisitions").tag("dump", "t1").functionCounter().count());
        assertEquals("bytes", registry.get("pageflux.pool.leased.bytes").gauge().getId().getBaseUnit());
        b.release();
        assertEquals(0.0, gauge(registry, "pageflux.pool.leased"));
    }

    private static double gauge(MeterRegistry registry, String name) {
        Gauge gauge = registry.get(name).tag("dump", "t1").gauge();
        return gauge.value();
    }

    /**
     * Micrometer is optional: the pool, its samples and the stream must work on a class path
     * without it. Loads them in a class loader that cannot see Micrometer and checks that the
     * binder, by contrast, cannot be loaded there (so the isolation is real).
     */
    @Test
    void thePoolWorksWithoutMicrometerOnTheClassPath() throws Exception {
        List<URL> urls = new ArrayList<>();
        int dropped = 0;
        // surefire runs tests from a manifest-only jar and publishes the real class path here
        String classPath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        for (String entry : classPath.split(File.pathSeparator)) {
            if (entry.contains("micrometer")) {
                dropped++;
                continue;
            }
            urls.add(new File(entry).toURI().toURL());
        }
        assertTrue(dropped > 0, "the test class path should contain micrometer");
        try (URLClassLoader isolated = new URLClassLoader(urls.toArray(URL[]::new),
                ClassLoader.getPlatformClassLoader())) {
            Class<?> dataSize = isolated.loadClass(DataSize.class.getName());
            Class<?> poolClass = isolated.loadClass(BufferPool.class.getName());
            Object chunk = dataSize.getMethod("ofKibibytes", long.class).invoke(null, 64L);
            Object pool = poolClass.getMethod("create", dataSize, dataSize).invoke(null, chunk, chunk);
            Object buffer = poolClass.getMethod("tryAcquire").invoke(pool);
            assertEquals(1, poolClass.getMethod("leasedBuffers").invoke(pool));
            Class<?> scheduler = isolated.loadClass("reactor.core.scheduler.Scheduler");
            Object immediate = isolated.loadClass("reactor.core.scheduler.Schedulers").getMethod("immediate")
                    .invoke(null);
            Object sample = poolClass.getMethod("sample", scheduler).invoke(pool, immediate);
            assertEquals(1, sample.getClass().getMethod("leasedBuffers").invoke(sample));
            Method release = buffer.getClass().getMethod("release");
            release.invoke(buffer);
            assertEquals(0, poolClass.getMethod("leasedBuffers").invoke(pool));
            assertThrows(NoClassDefFoundError.class,
                    () -> Class.forName(BufferPoolMetrics.class.getName(), true, isolated));
        }
    }
}
