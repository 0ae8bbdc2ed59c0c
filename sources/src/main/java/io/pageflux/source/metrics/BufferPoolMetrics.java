package io.pageflux.source.metrics;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.BaseUnits;
import io.micrometer.core.instrument.binder.MeterBinder;
import io.pageflux.source.BufferPool;
import java.util.Objects;

/**
 * Publishes a {@link BufferPool}'s state as Micrometer meters. Micrometer is an optional
 * dependency: only this package uses it, so applications without Micrometer never load it.
 *
 * <pre>{@code
 * new BufferPoolMetrics(pool, Tags.of("dump", "nightly")).bindTo(registry);
 * }</pre>
 *
 * <table>
 *   <caption>Meters</caption>
 *   <tr><th>name</th><th>type</th><th>unit</th><th>what</th></tr>
 *   <tr><td>{@code pageflux.pool.leased}</td><td>gauge</td><td>buffers</td><td>buffers leased now</td></tr>
 *   <tr><td>{@code pageflux.pool.leased.bytes}</td><td>gauge</td><td>bytes</td><td>bytes leased now</td></tr>
 *   <tr><td>{@code pageflux.pool.peak}</td><td>gauge</td><td>buffers</td><td>most buffers leased at once</td></tr>
 *   <tr><td>{@code pageflux.pool.peak.bytes}</td><td>gauge</td><td>bytes</td><td>most bytes leased at once</td></tr>
 *   <tr><td>{@code pageflux.pool.capacity}</td><td>gauge</td><td>buffers</td><td>buffers the budget allows</td></tr>
 *   <tr><td>{@code pageflux.pool.capacity.bytes}</td><td>gauge</td><td>bytes</td><td>the budget</td></tr>
 *   <tr><td>{@code pageflux.pool.waits}</td><td>counter</td><td>-</td><td>times a reader found no free buffer</td></tr>
 *   <tr><td>{@code pageflux.pool.acquisitions}</td><td>counter</td><td>buffers</td><td>buffers handed out</td></tr>
 * </table>
 *
 * <p>The meters hold the pool strongly, so they keep reporting after the dump ends; remove them
 * from the registry to let the pool go.
 */
public final class BufferPoolMetrics implements MeterBinder {

    private final BufferPool pool;
    private final Iterable<Tag> tags;

    public BufferPoolMetrics(BufferPool pool) {
        this(pool, Tags.empty());
    }

    /** @param tags added to every meter, e.g. which dump the pool serves */
    public BufferPoolMetrics(BufferPool pool, Iterable<Tag> tags) {
        this.pool = Objects.requireNonNull(pool, "pool");
        this.tags = Tags.of(Objects.requireNonNull(tags, "tags"));
    }

    @Override
    public void bindTo(MeterRegistry registry) {
        gauge(registry, "pageflux.pool.leased", "buffers leased now", "buffers", BufferPool::leasedBuffers);
        gauge(registry, "pageflux.pool.leased.bytes", "bytes leased now", BaseUnits.BYTES, BufferPool::leasedBytes);
        gauge(registry, "pageflux.pool.peak", "most buffers leased at once", "buffers",
                BufferPool::peakLeasedBuffers);
        gauge(registry, "pageflux.pool.peak.bytes", "most bytes leased at once", BaseUnits.BYTES,
                BufferPool::peakLeasedBytes);
        gauge(registry, "pageflux.pool.capacity", "buffers the budget allows", "buffers", BufferPool::capacity);
        gauge(registry, "pageflux.pool.capacity.bytes", "the pool's budget", BaseUnits.BYTES,
                p -> p.budget().bytes());
        FunctionCounter.builder("pageflux.pool.waits", pool, BufferPool::waits)
                .description("times a reader had demand but found no free buffer")
                .tags(tags)
                .register(registry);
        FunctionCounter.builder("pageflux.pool.acquisitions", pool, BufferPool::acquisitions)
                .description("buffers handed out")
                .baseUnit("buffers")
                .tags(tags)
                .register(registry);
    }

    private void gauge(MeterRegistry registry, String name, String description, String unit,
                       java.util.function.ToDoubleFunction<BufferPool> value) {
        Gauge.builder(name, pool, value)
                .description(description)
                .baseUnit(unit)
                .tags(tags)
                .strongReference(true)
                .register(registry);
    }
}
