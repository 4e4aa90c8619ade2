// Dump every intermediate tensor llama.cpp computes for one prompt (our own debugging
// harness against llama.h): used to check ggrun's ops bit for bit, op by op.
//   dump_tensors MODEL OUT_DIR N_THREADS TOKEN_ID...
// Writes OUT_DIR/<seq>_<name>.bin (raw data, f32 or f16 as computed) and OUT_DIR/index.txt
// (name type ne0 ne1 ne2 ne3).
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static std::string g_dir;
static FILE *g_index;
static int g_seq = 0;

static bool cb(struct ggml_tensor *t, bool ask, void *) {
    if (ask) return true;                       // we want every tensor
    if (!ggml_is_contiguous(t)) return true;
    std::vector<char> buf(ggml_nbytes(t));
    ggml_backend_tensor_get(t, buf.data(), 0, buf.size());
    std::string name = t->name;
    for (auto &c : name) if (c == ' ' || c == '/' || c == '(' || c == ')') c = '_';
    char seq[16];
    snprintf(seq, sizeof seq, "%04d_", g_seq++);
    name = seq + name;
    FILE *f = fopen((g_dir + "/" + name + ".bin").c_str(), "wb");
    fwrite(buf.data(), 1, buf.size(), f);
    fclose(f);
    fprintf(g_index, "%s %s %lld %lld %lld %lld\n", name.c_str(), ggml_type_name(t->type),
            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s MODEL OUT_DIR N_THREADS TOKEN...\n", argv[0]); return 1; }
    g_dir = argv[2];
    int n_threads = atoi(argv[3]);
    std::vector<llama_token> toks;
    for (int i = 4; i < argc; i++) toks.push_back(atoi(argv[i]));
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048; cp.n_batch = 2048; cp.n_ubatch = 512;
    cp.n_threads = n_threads; cp.n_threads_batch = n_threads;
    cp.cb_eval = cb; cp.cb_eval_user_data = nullptr;
    llama_context *ctx = llama_init_from_model(model, cp);
    g_index = fopen((g_dir + "/index.txt").c_str(), "w");
    llama_batch b = llama_batch_get_one(toks.data(), (int)toks.size());
    if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
    fclose(g_index);
    llama_free(ctx); llama_model_free(model);
    return 0;
}
