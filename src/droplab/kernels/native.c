/* droplab's CPU dropout kernel in plain C99 (no Python API), loaded by native.py with ctypes.
 *
 * The mask is the one specified in counter.py: the 64-bit word for counter j is
 * mix(seed + (j + 1) * GOLDEN) (SplitMix64's finalizer); in block b of 2 * HALF elements, the
 * element at offset k < HALF takes the low 32 bits of the word for j = b * HALF + k, the element
 * at offset HALF + k its high 32 bits; an element is kept when its draw u >= thr.
 *
 * Values, exactly as numba_cpu.py and `mask * x / (1 - p)` compute them: kept x / keep, dropped
 * x * 0 (NaN stays NaN). Compiled without -ffast-math and with -ffp-contract=off: every result is
 * one IEEE operation, the same bits on any machine.
 *
 * Threads: whole blocks are split over `chunks` threads of an OpenMP region whose size is given
 * by its num_threads clause only (omp_set_num_threads would change torch's count: torch loads the
 * same libgomp). An element's value depends on its index alone, so not on the thread count.
 */
#include <stdint.h>

#define HALF 512
#define BLOCK (2 * HALF)

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;
static const uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL;
static const uint64_t MIX2 = 0x94D049BB133111EBULL;

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

/* The element op: ReLU first where `relu` (r = h < 0 ? 0 : h, so NaN stays NaN), then kept
 * r / keep, dropped r * 0. */
#define RELU(T, v, relu) ((relu) && (v) < 0 ? (T)0 : (v))
#define OP(T, v, kept, keep, relu) ((kept) ? RELU(T, v, relu) / (keep) : RELU(T, v, relu) * (T)0)

/* Blocks [b0, b1) of n elements: a whole block in one vectorized loop, one 64-bit word per pair of
 * elements (low half `(z << 32) >= cut`, high half `z >= cut`, where cut = thr << 32: the same
 * tests as `u32 >= thr` without extracting the halves); the partial last block element by element.
 * The loops carry no dependence, also in place (x == out). `relu` is constant where inlined. */
#define BLOCKS(T, S)                                                                                 \
    static inline __attribute__((always_inline)) void blocks_body_##S(                               \
        const T *x, T *out, int64_t n, int64_t b0, int64_t b1, uint64_t seed, uint32_t thr, T keep,  \
        const int relu) {                                                                            \
        const uint64_t cut = (uint64_t)thr << 32;                                                    \
        for (int64_t b = b0; b < b1; b++) {                                                          \
            const int64_t lo = b * BLOCK;                                                            \
            const uint64_t base = seed + ((uint64_t)b * HALF + 1) * GOLDEN;                          \
            const T *xs = x + lo;                                                                    \
            T *os = out + lo;                                                                        \
            if (n - lo >= BLOCK) {                                                                   \
                uint64_t counter = base;                                                             \
                _Pragma("GCC ivdep") for (int k = 0; k < HALF; k++) {                                \
                    const uint64_t z = mix(counter);                                                 \
                    counter += GOLDEN;                                                               \
                    const T a = xs[k], c = xs[HALF + k];                                             \
                    os[k] = OP(T, a, (z << 32) >= cut, keep, relu);                                  \
                    os[HALF + k] = OP(T, c, z >= cut, keep, relu);                                   \
                }                                                                                    \
            } else {                                                                                 \
                const int m = (int)(n - lo);                                                         \
                for (int k = 0; k < m; k++) {                                                        \
                    const uint64_t z = mix(base + (uint64_t)(k < HALF ? k : k - HALF) * GOLDEN);     \
                    const int kept = (k < HALF ? z << 32 : z) >= cut;                                \
                    os[k] = OP(T, xs[k], kept, keep, relu);                                          \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    static void blocks_##S(const T *x, T *out, int64_t n, int64_t b0, int64_t b1, uint64_t seed,     \
                           uint32_t thr, T keep, int relu) {                                         \
        if (relu)                                                                                    \
            blocks_body_##S(x, out, n, b0, b1, seed, thr, keep, 1);                                  \
        else                                                                                         \
            blocks_body_##S(x, out, n, b0, b1, seed, thr, keep, 0);                                  \
    }

/* All blocks, on `chunks` threads: thread c takes the c-th run of ceil(nblocks / chunks) blocks. */
#define RUN(T, S)                                                                                    \
    static void run_##S(const T *x, T *out, int64_t n, uint64_t seed, uint32_t thr, T keep,          \
                        int chunks, int relu) {                                                      \
        const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                             \
        if (chunks <= 1) {                                                                           \
            blocks_##S(x, out, n, 0, nblocks, seed, thr, keep, relu);                                \
            return;                                                                                  \
        }                                                                                            \
        const int64_t per = (nblocks + chunks - 1) / chunks;                                         \
        _Pragma("omp parallel for num_threads(chunks) schedule(static, 1)")                         \
        for (int c = 0; c < chunks; c++) {                                                           \
            const int64_t b0 = c * per, b1 = b0 + per < nblocks ? b0 + per : nblocks;                \
            if (b0 < b1) blocks_##S(x, out, n, b0, b1, seed, thr, keep, relu);                       \
        }                                                                                            \
    }

/* The exported functions. keep = 1 - p as a double, rounded here to T (as numpy rounds it). */
#define EXPORTS(T, S)                                                                                \
    void droplab_dropout_##S(const T *x, T *out, int64_t n, uint64_t seed, uint32_t thr,             \
                             double keep, int chunks) {                                              \
        run_##S(x, out, n, seed, thr, (T)keep, chunks, 0);                                           \
    }                                                                                                \
    void droplab_relu_dropout_##S(T *h, int64_t n, uint64_t seed, uint32_t thr, double keep,         \
                                  int chunks) {                                                      \
        run_##S(h, h, n, seed, thr, (T)keep, chunks, 1);                                             \
    }                                                                                                \
    /* gin = out > 0 ? g / keep : 0, from relu_dropout's output (out > 0 iff passed and kept) */     \
    void droplab_relu_dropout_backward_##S(const T *g, const T *out, T *gin, int64_t n,              \
                                           double keep, int chunks) {                                \
        const T k = (T)keep;                                                                         \
        if (chunks <= 1) {                                                                           \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) gin[i] = out[i] > 0 ? g[i] / k : 0; \
            return;                                                                                  \
        }                                                                                            \
        _Pragma("omp parallel for simd num_threads(chunks) schedule(static)")                       \
        for (int64_t i = 0; i < n; i++) gin[i] = out[i] > 0 ? g[i] / k : 0;                          \
    }

/* residual + dropout(x + bias) (bias optional: a vector of bias_n values repeating along x, the
 * last dimension of a row-major tensor), one pass, per block of the mask:
 *   1. where there is a bias, t = xs + bias into a block on the stack, in runs of consecutive bias
 *      indices (each a plain vectorized loop; the block stays in L1 cache);
 *   2. os = OP(t) + rs, t from xs or from step 1: kept t / keep, dropped t * 0, then + residual.
 * Each value is the composed expression's: (x + bias) rounded, then / keep rounded, then + r
 * rounded. `out` may be x or r (each element is read before it is written). */
#define ADD_BLOCKS(T, S)                                                                             \
    static inline __attribute__((always_inline)) void add_body_##S(                                  \
        const T *x, const T *bias, int64_t bias_n, const T *r, T *out, int64_t n, int64_t b0,        \
        int64_t b1, uint64_t seed, uint32_t thr, T keep, const int has_bias) {                       \
        const uint64_t cut = (uint64_t)thr << 32;                                                    \
        for (int64_t b = b0; b < b1; b++) {                                                          \
            const int64_t lo = b * BLOCK;                                                            \
            const int m = (int)(n - lo < BLOCK ? n - lo : BLOCK);                                    \
            const uint64_t base = seed + ((uint64_t)b * HALF + 1) * GOLDEN;                          \
            const T *ts = x + lo, *rs = r + lo;                                                      \
            T *os = out + lo;                                                                        \
            T biased[has_bias ? BLOCK : 1];                                                          \
            if (has_bias) {                                                                          \
                int64_t j = lo % bias_n;                                                             \
                for (int k = 0; k < m;) {                                                            \
                    const int run = (int)(bias_n - j < m - k ? bias_n - j : m - k);                  \
                    _Pragma("GCC ivdep") for (int t = 0; t < run; t++) biased[k + t] = ts[k + t] + bias[j + t]; \
                    k += run;                                                                        \
                    j = 0;                                                                           \
                }                                                                                    \
                ts = biased;                                                                         \
            }                                                                                        \
            if (m == BLOCK) {                                                                        \
                uint64_t counter = base;                                                             \
                _Pragma("GCC ivdep") for (int k = 0; k < HALF; k++) {                                \
                    const uint64_t z = mix(counter);                                                 \
                    counter += GOLDEN;                                                               \
                    const T a = ts[k], c = ts[HALF + k], ra = rs[k], rc = rs[HALF + k];              \
                    os[k] = OP(T, a, (z << 32) >= cut, keep, 0) + ra;                                \
                    os[HALF + k] = OP(T, c, z >= cut, keep, 0) + rc;                                 \
                }                                                                                    \
            } else {                                                                                 \
                for (int k = 0; k < m; k++) {                                                        \
                    const uint64_t z = mix(base + (uint64_t)(k < HALF ? k : k - HALF) * GOLDEN);     \
                    const int kept = (k < HALF ? z << 32 : z) >= cut;                                \
                    os[k] = OP(T, ts[k], kept, keep, 0) + rs[k];                                     \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    static void add_blocks_##S(const T *x, const T *bias, int64_t bias_n, const T *r, T *out,        \
                               int64_t n, int64_t b0, int64_t b1, uint64_t seed, uint32_t thr,       \
                               T keep) {                                                             \
        if (bias)                                                                                    \
            add_body_##S(x, bias, bias_n, r, out, n, b0, b1, seed, thr, keep, 1);                    \
        else                                                                                         \
            add_body_##S(x, bias, bias_n, r, out, n, b0, b1, seed, thr, keep, 0);                    \
    }                                                                                                \
    void droplab_dropout_add_##S(const T *x, const T *bias, int64_t bias_n, const T *r, T *out,      \
                                 int64_t n, uint64_t seed, uint32_t thr, double keep, int chunks) {  \
        const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                             \
        if (chunks <= 1) {                                                                           \
            add_blocks_##S(x, bias, bias_n, r, out, n, 0, nblocks, seed, thr, (T)keep);              \
            return;                                                                                  \
        }                                                                                            \
        const int64_t per = (nblocks + chunks - 1) / chunks;                                         \
        _Pragma("omp parallel for num_threads(chunks) schedule(static, 1)")                         \
        for (int c = 0; c < chunks; c++) {                                                           \
            const int64_t b0 = c * per, b1 = b0 + per < nblocks ? b0 + per : nblocks;                \
            if (b0 < b1) add_blocks_##S(x, bias, bias_n, r, out, n, b0, b1, seed, thr, (T)keep);     \
        }                                                                                            \
    }

BLOCKS(float, f32)
RUN(float, f32)
EXPORTS(float, f32)
ADD_BLOCKS(float, f32)
BLOCKS(double, f64)
RUN(double, f64)
EXPORTS(double, f64)
ADD_BLOCKS(double, f64)

/* 1 if none of the n values at x is a NaN or an infinity (all exponent bits set), else 0: the
 * divergence check of a training step, reading each gradient once with integer operations. */
int droplab_all_finite_f32(const uint32_t *x, int64_t n) {
    uint32_t bad = 0;
    _Pragma("omp simd reduction(|:bad)") for (int64_t i = 0; i < n; i++)
        bad |= (x[i] & 0x7F800000u) == 0x7F800000u;
    return !bad;
}
int droplab_all_finite_f64(const uint64_t *x, int64_t n) {
    uint64_t bad = 0;
    _Pragma("omp simd reduction(|:bad)") for (int64_t i = 0; i < n; i++)
        bad |= (x[i] & 0x7FF0000000000000ull) == 0x7FF0000000000000ull;
    return !bad;
}

/* Checked by the loader: a library that answers this is a whole build of this source. */
int droplab_native_abi(void) { return 3; }
