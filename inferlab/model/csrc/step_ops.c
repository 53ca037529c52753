/* Element-wise steps of a serving step, fused (CPU, fp32): what the torch reference does in several
 * passes over memory (and several temporaries), each in one pass here.
 *
 * Built with paged_attention.c into one library by inferlab/model/native.py; the torch versions
 * they replace are `inferlab.model.ops.TorchStepOps` (tested equal).
 * Rows are strided (element strides given); within a row, elements are contiguous.
 */
#include <math.h>
#include <stdint.h>

/* out[r] = x[r] / rms(x[r]) * w; with residual != 0: residual[r] += x[r] first and the norm is of the sum. */
void rms_norm_f32(const float *x, int64_t x_row, float *residual, int64_t res_row, const float *w, int64_t rows,
                  int64_t h, float eps, float *out, int64_t out_row)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_row;
        float *o = out + r * out_row, ss = 0.f;
        if (residual) {
            float *res = residual + r * res_row;
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < h; i++) {
                res[i] += xr[i];
                ss += res[i] * res[i];
            }
            xr = res;
        } else {
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < h; i++) ss += xr[i] * xr[i];
        }
        const float inv = 1.f / sqrtf(ss / (float)h + eps);
#pragma omp simd
        for (int64_t i = 0; i < h; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

/* Rotary embedding of the q and k heads of each token's fused q/k/v row, in place, then its k and v
 * stored in the pool (returns 1 for an odd d, 3 for a slot outside the pool; nothing is written then).
 * qkv [n, (nh + 2 * nkv) * d] (row stride qkv_row), cos/sin [n, d] (contiguous),
 * pools [nkv, num_slots, d], slot_mapping int64 [n]. Half-split layout: pairs (i, i + d/2). */
int rope_store_kv_f32(float *qkv, int64_t qkv_row, const float *cos, const float *sin, int64_t n, int64_t nh,
                      int64_t nkv, int64_t d, float *k_pool, float *v_pool, int64_t num_slots,
                      const int64_t *slot_mapping)
{
    const int64_t half = d / 2;
    if (d % 2) return 1;
    for (int64_t t = 0; t < n; t++)  /* a slot outside the pool would write anywhere: nothing is written then */
        if (slot_mapping[t] < 0 || slot_mapping[t] >= num_slots) return 3;
    for (int64_t t = 0; t < n; t++) {
        float *row = qkv + t * qkv_row;
        const float *c = cos + t * d, *s = sin + t * d;
        for (int64_t j = 0; j < nh + nkv; j++) {
            float *x = row + j * d;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                const float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * c[i] - x2 * s[i];
                x[i + half] = x2 * c[i + half] + x1 * s[i + half];
            }
        }
        const int64_t slot = slot_mapping[t];
        for (int64_t j = 0; j < nkv; j++) {
            const float *k = row + (nh + j) * d, *v = row + (nh + nkv + j) * d;
            float *kd = k_pool + (j * num_slots + slot) * d, *vd = v_pool + (j * num_slots + slot) * d;
#pragma omp simd
            for (int64_t i = 0; i < d; i++) {
                kd[i] = k[i];
                vd[i] = v[i];
            }
        }
    }
    return 0;
}

/* out[r] = silu(gate[r]) * up[r], gate and up the two halves of gu [rows, 2 * m] (row stride gu_row). */
void silu_mul_f32(const float *gu, int64_t gu_row, int64_t rows, int64_t m, float *out, int64_t out_row)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gu + r * gu_row, *u = g + m;
        float *o = out + r * out_row;
#pragma omp simd
        for (int64_t i = 0; i < m; i++) o[i] = g[i] / (1.f + expf(-g[i])) * u[i];
    }
}
