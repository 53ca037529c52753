/* Decode attention that reads K/V in place from a paged pool (CPU, fp32).
 *
 * Built and loaded by inferlab/model/native.py (gcc, at first use; ctypes). One call per layer
 * attends every decode of the step: decode r is query row r, sequence r; its context is the
 * first seq_lens[r] slots of its block table. Work is split over (row, KV head) pairs; each
 * pair scores the G = nh / nkv query heads that share the KV head against every slot of the
 * row's blocks (no gather copy, no padding to a group's longest context), takes the softmax
 * and sums the V rows, reading each K and V block once.
 *
 * Layouts (element strides, fp32 unless noted):
 *   q, out   [rows, nh, d]: row r, head j at r * q_row + j * d (out: r * out_row + j * d)
 *   k, v     [nkv, num_blocks, B, d], contiguous; slot l of a sequence is block table[l / B],
 *            offset l % B
 *   tables   int64 [rows, >= ceil(seq_len / B)], row r at r * table_row
 *   seq_lens int64 [rows], each >= 1
 * Returns 0, or 1 (bad sizes), 2 (a length < 1), 3 (a block id outside the pool): nothing is read then.
 */
#include <math.h>
#include <stdint.h>

/* Blocks sit anywhere in the pool, so the hardware prefetcher cannot guess the next one: fetch the
 * lines of the block PREFETCH_AHEAD blocks on while this one is scored. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4
#endif
static inline __attribute__((always_inline)) void prefetch_block(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
}

static inline __attribute__((always_inline)) void attend(
    const int64_t d, const float *restrict q, const float *restrict k, const float *restrict v,
    const int64_t *restrict table, const int64_t len, const int64_t G, const int64_t B,
    const int64_t block_stride, const float scale, float *restrict out, float *restrict s, float *restrict acc)
{
    const int64_t nb = (len + B - 1) / B;
    for (int64_t lb = 0; lb < nb && lb < PREFETCH_AHEAD; lb++) prefetch_block(k + table[lb] * block_stride, block_stride);
    for (int64_t lb = 0; lb < nb; lb++) {  /* scores: s[g * len + l] = q_g . k_l * scale */
        const float *kb = k + table[lb] * block_stride;
        if (lb + PREFETCH_AHEAD < nb) prefetch_block(k + table[lb + PREFETCH_AHEAD] * block_stride, block_stride);
        prefetch_block(v + table[lb] * block_stride, block_stride);  /* V of this block, for the sum below */
        const int64_t n = (lb + 1) * B <= len ? B : len - lb * B;
        for (int64_t o = 0; o < n; o++) {
            const float *kv = kb + o * d;
            for (int64_t g = 0; g < G; g++) {
                const float *qg = q + g * d;
                float dot = 0.f;
#pragma omp simd reduction(+ : dot)
                for (int64_t i = 0; i < d; i++) dot += qg[i] * kv[i];
                s[g * len + lb * B + o] = dot * scale;
            }
        }
    }
    for (int64_t g = 0; g < G; g++) {  /* softmax over the row's slots */
        float *sg = s + g * len, m = sg[0], sum = 0.f;
        for (int64_t l = 1; l < len; l++) m = sg[l] > m ? sg[l] : m;
#pragma omp simd reduction(+ : sum)
        for (int64_t l = 0; l < len; l++) {
            sg[l] = expf(sg[l] - m);
            sum += sg[l];
        }
        const float inv = 1.f / sum;
#pragma omp simd
        for (int64_t l = 0; l < len; l++) sg[l] *= inv;
    }
    for (int64_t i = 0; i < G * d; i++) acc[i] = 0.f;
    for (int64_t lb = 0; lb < nb; lb++) {  /* out_g = sum_l p_gl v_l */
        const float *vb = v + table[lb] * block_stride;
        const int64_t n = (lb + 1) * B <= len ? B : len - lb * B;
        for (int64_t o = 0; o < n; o++) {
            const float *vv = vb + o * d;
            for (int64_t g = 0; g < G; g++) {
                const float p = s[g * len + lb * B + o];
                float *ag = acc + g * d;
#pragma omp simd
                for (int64_t i = 0; i < d; i++) ag[i] += p * vv[i];
            }
        }
    }
    for (int64_t i = 0; i < G * d; i++) out[i] = acc[i];
}

int paged_decode_f32(const float *q, int64_t q_row, const float *k_pool, const float *v_pool,
                     const int64_t *tables, int64_t table_row, const int64_t *seq_lens, int64_t rows,
                     int64_t nh, int64_t nkv, int64_t d, int64_t B, int64_t num_blocks, float scale,
                     float *out, int64_t out_row, int num_threads)
{
    if (rows <= 0) return 0;
    if (nkv <= 0 || nh % nkv || d <= 0 || B <= 0) return 1;
    const int64_t G = nh / nkv, block_stride = B * d, head_stride = num_blocks * B * d;
    for (int64_t r = 0; r < rows; r++) {  /* a bad length or block id would read outside the pool */
        if (seq_lens[r] < 1) return 2;
        for (int64_t lb = 0; lb < (seq_lens[r] + B - 1) / B; lb++)
            if (tables[r * table_row + lb] < 0 || tables[r * table_row + lb] >= num_blocks) return 3;
    }
#pragma omp parallel for schedule(dynamic, 4) num_threads(num_threads) if (num_threads > 1)
    for (int64_t w = 0; w < rows * nkv; w++) {
        const int64_t r = w / nkv, h = w % nkv, len = seq_lens[r];
        float s[G * len], acc[G * d];
        const float *qh = q + r * q_row + h * G * d;
        const float *kh = k_pool + h * head_stride, *vh = v_pool + h * head_stride;
        const int64_t *table = tables + r * table_row;
        float *oh = out + r * out_row + h * G * d;
        switch (d) {  /* a constant head size lets the compiler unroll and vectorise the inner loops */
        case 32: attend(32, qh, kh, vh, table, len, G, B, block_stride, scale, oh, s, acc); break;
        case 64: attend(64, qh, kh, vh, table, len, G, B, block_stride, scale, oh, s, acc); break;
        case 128: attend(128, qh, kh, vh, table, len, G, B, block_stride, scale, oh, s, acc); break;
        default: attend(d, qh, kh, vh, table, len, G, B, block_stride, scale, oh, s, acc);
        }
    }
    return 0;
}
