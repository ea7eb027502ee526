/* pcgraph's CPU elementwise kernels (float32), compiled on first use by pcgraph/ops/native.py.
 *
 * Each kernel walks `rows` rows of `cols` contiguous floats; a row starts `stride` floats after
 * the previous one (a node's columns of the [B, D] state are such a view). No kernel raises
 * floating-point exceptions or sets errno; NaN and ±inf propagate as in torch's kernels.
 *
 * tanh: the rational approximation x P(x²) / Q(x²) (degrees 13 / 6) on x clamped to
 * ±7.9053111 (where tanh rounds to ±1 in float32), the form Eigen and XLA use on the CPU:
 * measured ≤ 2.3 ulp from float64 tanh, and it vectorizes (FMA, one division); the result is
 * clamped to [−1, 1], so that σ'(x) = 1 − tanh² is never negative.
 * gelu (exact, erf form) and its derivative: glibc's vector erff / expf (libmvec, ≤ 4 ulp).
 */
#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#pragma omp declare simd notinbranch
extern float erff(float);
#pragma omp declare simd notinbranch
extern float expf(float);

static inline float pc_tanh(float x) {
  const float c = 7.90531110763549805f;
  float lo = x < -c ? -c : x; /* NaN fails both tests and stays NaN */
  x = lo > c ? c : lo;
  float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  float t = p / q; /* rounding can leave |t| a hair above 1 near the clamp: 1 − t² < 0 */
  t = t > 1.0f ? 1.0f : t;
  return t < -1.0f ? -1.0f : t;
}

/* y = tanh(x) */
void pc_tanh_f32(const float *x, float *y, int64_t rows, int64_t cols, int64_t xs, int64_t ys) {
  for (int64_t r = 0; r < rows; r++) {
    const float *a = x + r * xs;
    float *b = y + r * ys;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cols; c++) b[c] = pc_tanh(a[c]);
  }
}

/* y = x Φ(x) = x (1 + erf(x / √2)) / 2 */
void pc_gelu_f32(const float *x, float *y, int64_t rows, int64_t cols, int64_t xs, int64_t ys) {
  for (int64_t r = 0; r < rows; r++) {
    const float *a = x + r * xs;
    float *b = y + r * ys;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cols; c++) b[c] = 0.5f * a[c] * (1.0f + erff(a[c] * 0.70710678118654752f));
  }
}

/* exp(−x²/2), kept on glibc's fast lanes. libmvec's vector expf computes lanes whose argument
 * lies below its range (a float32 result that is denormal or 0) one by one: a GELU step on
 * states of standard deviation 10 took 9× the time of one at 1 (254 against 35 µs at
 * 300 × 256 on an AVX-512 EPYC), 16× at 20. So expf sees its argument floored at pc_exp_floor
 * (−87: e^−87 = 1.6e-38, just above the smallest normal float32), and the result is multiplied
 * by `keep`, 1 from the floor up and 0 below it. So x φ(x) is exactly 0 for |x| > 13.19, where
 * its true value is below 8.4e-38 in magnitude (still a normal float32 down to |x| ≈ 13.34:
 * those are flushed to 0 too), NaN at x = ±∞ as torch's, and no denormal is made (callers
 * multiply x by 1/√(2π) before this factor).
 * Two details keep GCC from undoing this (it did): the floor is a variable, not a constant
 * (with a constant it rewrote expf(max(a, c)) as a < c ? expf(c) : expf(a) and called the
 * vector expf on the unclamped argument), and `keep` is arithmetic on a, not a select on
 * a < c (a select on that condition let it drop the floor inside the other branch). NaN
 * propagates through expf. */
float pc_exp_floor = -87.0f;

static inline float pc_gauss(float v, float c) { /* c: pc_exp_floor, read once per call */
  float a = -0.5f * v * v;
  float e = expf(a < c ? c : a);
  float keep = (a - c) * 1e30f + 1.0f; /* ≥ 1 from the floor up, < 0 below it (−∞ at x = ±∞) */
  keep = keep > 1.0f ? 1.0f : keep;
  keep = keep < 0.0f ? 0.0f : keep;
  return e * keep;
}

/* g ← g (Φ(x) + x φ(x)), the derivative of x Φ(x) */
void pc_gelu_vjp_f32(float *g, const float *x, int64_t rows, int64_t cols, int64_t gs, int64_t xs) {
  const float floor_ = pc_exp_floor; /* once: the stores below could alias the global */
  for (int64_t r = 0; r < rows; r++) {
    float *m = g + r * gs;
    const float *a = x + r * xs;
    _Pragma("omp simd")
    for (int64_t c = 0; c < cols; c++) {
      float v = a[c];
      float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
      /* v φ(v) as (v / √(2π)) · exp(−v²/2): the floor's smallest nonzero exp, 1.6e-38, times
       * |v| / √(2π) ≥ 5.3 stays a normal float32 (φ alone would be denormal there) */
      m[c] *= cdf + v * 0.3989422804014327f * pc_gauss(v, floor_);
    }
  }
}

/* One plain gradient step of a node's states, fused: x ← x − γ (d − σ'(x) ⊙ m), where m is the
 * message Σ δ_c W_c from its children, d its own error signal δ (NULL for none: a root, or an
 * error known to be 0) and σ' taken from s = σ(x) or from x itself, by `kind`:
 *   0 identity (σ' = 1), 1 tanh (1 − s²), 2 sigmoid (s (1 − s)), 3 relu ([s > 0], NaN kept),
 *   4 gelu (Φ(x) + x φ(x), with Φ(x) = s / x: one expf and a division per element instead of
 *     erff and expf; x is read before it is written).
 * The separate kernels this replaces (the vjp, the subtraction, the update) each read and write
 * the whole block; this reads x, s, d, m once and writes x once. Row strides per operand. */
#define PC_SGD_LOOP(deriv)                                                                      \
  for (int64_t r = 0; r < rows; r++) {                                                          \
    float *xr = x + r * xs;                                                                     \
    const float *sr = s + r * ss, *mr = m + r * ms;                                             \
    if (d) {                                                                                    \
      const float *dr = d + r * ds;                                                             \
      _Pragma("omp simd") for (int64_t c = 0; c < cols; c++) {                                  \
        float v = xr[c], y = sr[c];                                                             \
        (void)y;                                                                                \
        xr[c] = v - lr * (dr[c] - (deriv) * mr[c]);                                             \
      }                                                                                         \
    } else {                                                                                    \
      _Pragma("omp simd") for (int64_t c = 0; c < cols; c++) {                                  \
        float v = xr[c], y = sr[c];                                                             \
        (void)y;                                                                                \
        xr[c] = v + lr * ((deriv) * mr[c]);                                                     \
      }                                                                                         \
    }                                                                                           \
  }

void pc_sgd_step_f32(float *x, const float *s, const float *d, const float *m, float lr, int kind,
                     int64_t rows, int64_t cols, int64_t xs, int64_t ss, int64_t ds, int64_t ms) {
  const float floor_ = pc_exp_floor; /* once: the stores below could alias the global */
  switch (kind) {
  case 0:
    PC_SGD_LOOP(1.0f) break;
  case 1:
    PC_SGD_LOOP(1.0f - y * y) break;
  case 2:
    PC_SGD_LOOP(y * (1.0f - y)) break;
  case 3:
    PC_SGD_LOOP((y <= 0.0f ? 0.0f : 1.0f)) break; /* NaN passes, as torch's */
  case 4:
    /* Φ(x) = σ(x) / x (no erf), from its Taylor form 1/2 + x φ(0) within 1e-3 of 0 */
    PC_SGD_LOOP(((v > 1e-3f || v < -1e-3f) ? y / v : 0.5f + 0.3989422804014327f * v) +
                v * 0.3989422804014327f * pc_gauss(v, floor_)) break;
  }
}

/* Per-node energies ½ w Σ ε² of a node-blocked error buffer in one call: block k holds
 * len[k] contiguous floats from base + off[k]; out[idx[k]] = scale[k] · Σ ε² (accumulated in
 * double, so that a block of 10⁶ floats loses nothing to the order of summation); the other
 * entries of out are left as they are. NaN and ±inf propagate. */
void pc_block_energy_f32(const float *base, const int64_t *off, const int64_t *len,
                         const double *scale, const int64_t *idx, int64_t n, float *out) {
  for (int64_t k = 0; k < n; k++) {
    const float *e = base + off[k];
    double acc = 0.0;
    _Pragma("omp simd reduction(+ : acc)") for (int64_t c = 0; c < len[k]; c++) {
      double v = (double)e[c];
      acc += v * v;
    }
    out[idx[k]] = (float)(scale[k] * acc);
  }
}

/* Copy n blocks of contiguous floats (src[k]: rows[k] × cols[k]) into rows of floats that start
 * dstride[k] apart (dst[k]; a node's columns of the [B, D] state), in one call. Addresses are
 * passed as integers. Returns whether every value copied is finite (v · 0 is 0 for finite v,
 * NaN otherwise: one multiply-add per vector on the way). Plain vector stores: streaming
 * (non-temporal) stores were used until 2026-12-07; on the AVX2 EPYC they then took 289 µs
 * for the four [300, 256] blocks of an MLP's hidden states against 66–80 µs with plain stores,
 * and a hybrid-init update ran ~5 % slower with them (they had measured 37–41 µs against
 * torch's 69–84 µs on 2026-12-03: the cost of a non-temporal store depends on the host). */
#if defined(__AVX512F__)
#define PC_W 16
typedef __m512 pc_vec;
#define PC_LOAD _mm512_loadu_ps
#define PC_STOREU _mm512_storeu_ps
#define PC_ZERO _mm512_setzero_ps
#define PC_MULADD(acc, v, z) _mm512_add_ps(acc, _mm512_mul_ps(v, z))
#elif defined(__AVX__)
#define PC_W 8
typedef __m256 pc_vec;
#define PC_LOAD _mm256_loadu_ps
#define PC_STOREU _mm256_storeu_ps
#define PC_ZERO _mm256_setzero_ps
#define PC_MULADD(acc, v, z) _mm256_add_ps(acc, _mm256_mul_ps(v, z))
#elif defined(__SSE__)
#define PC_W 4
typedef __m128 pc_vec;
#define PC_LOAD _mm_loadu_ps
#define PC_STOREU _mm_storeu_ps
#define PC_ZERO _mm_setzero_ps
#define PC_MULADD(acc, v, z) _mm_add_ps(acc, _mm_mul_ps(v, z))
#endif

int pc_store_blocks_f32(const int64_t *dst, const int64_t *src, const int64_t *rows,
                        const int64_t *cols, const int64_t *dstride, int64_t n) {
  float acc = 0.0f;
  for (int64_t k = 0; k < n; k++) {
    float *d0 = (float *)(intptr_t)dst[k];
    const float *s0 = (const float *)(intptr_t)src[k];
    const int64_t m = cols[k];
    for (int64_t r = 0; r < rows[k]; r++) {
      float *d = d0 + r * dstride[k];
      const float *s = s0 + r * m;
      int64_t c = 0;
#ifdef PC_W
      pc_vec va = PC_ZERO(), zero = PC_ZERO();
      for (; c + PC_W <= m; c += PC_W) {
        pc_vec v = PC_LOAD(s + c);
        va = PC_MULADD(va, v, zero);
        PC_STOREU(d + c, v);
      }
      float lanes[PC_W];
      PC_STOREU(lanes, va);
      for (int i = 0; i < PC_W; i++)
        acc += lanes[i];
#endif
      for (; c < m; c++)
        acc += (d[c] = s[c]) * 0.0f;
    }
  }
  return acc == 0.0f;
}
