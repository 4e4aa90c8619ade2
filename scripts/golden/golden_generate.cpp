// golden_generate: greedy reference generation with libllama (llama.cpp's C API),
// used by scripts/make_golden.py to produce ggrun's golden files.
//
// usage:
//   golden_generate MODEL INPUT OUTPUT [N_PREDICT=64] [N_THREADS=2] [FA=auto|on|off] [N_CTX=2048]
//                   [TYPE_K=f16] [TYPE_V=f16]
//
// TYPE_K / TYPE_V: the KV cache types (llama_context_params.type_k/type_v, the CLI's -ctk/-ctv),
// by ggml type name: f32, f16, bf16, q8_0, ... (a quantized V cache needs FA=on).
//
// INPUT (simple length-prefixed text format, raw UTF-8, no escaping):
//   <n_prompts>\n
//   then per prompt: <n_bytes>\n<exactly n_bytes of prompt text>\n
//
// OUTPUT: one JSON object:
//   { "llama_version": ..., "ggml_version": ..., "ggml_commit": ..., "system_info": ...,
//     "n_threads": ..., "n_threads_batch": ..., "n_ctx": ..., "n_batch": ..., "n_ubatch": ...,
//     "flash_attn_requested": "auto|on|off", "flash_attn_resolved": "enabled|disabled|unknown",
//     "type_k": "f16", "type_v": "f16" (TYPE_K/TYPE_V), "add_special": bool, "parse_special": true,
//     "n_vocab": ..., "n_predict": ...,
//     "prompts": [ { "prompt_ids": [...], "generated_ids": [...],
//                    "top5": [ [[id, logit], ...5], ...n_predict ],   // logits that chose each generated token
//                    "last_logits": [ n_vocab floats, %.9g = exact float32 round trip ] } ] }
//
// Per prompt a fresh llama_context is created (as one llama-completion run per prompt would),
// the whole prompt is decoded in one llama_decode call (logits requested only for the last
// prompt position, as llama-completion does), then N_PREDICT tokens are chosen with
// llama.cpp's greedy sampler (argmax, first index wins on ties) and fed back one at a time.
// Generation does NOT stop at end-of-generation tokens; all N_PREDICT tokens are recorded.
// The log of llama.cpp is forwarded to stderr.

#include "llama.h"
#include "ggml.h"

#include <algorithm>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static std::string g_log;       // everything llama.cpp logged (searched for settings it resolved)
static bool g_verbose = false;  // GOLDEN_VERBOSE=1: forward the full log to stderr

static void log_cb(enum ggml_log_level level, const char * text, void * /*user*/) {
    static enum ggml_log_level last = GGML_LOG_LEVEL_INFO;
    if (level != GGML_LOG_LEVEL_CONT) last = level;
    g_log += text;
    if (g_verbose || last == GGML_LOG_LEVEL_WARN || last == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

// log lines worth keeping in the output (how llama.cpp set itself up)
static std::vector<std::string> interesting_log_lines(const std::string & log) {
    static const char * keys[] = {
        "Flash Attention", "flash_attn", "CPU_REPACK", "model buffer size", "KV buffer size",
        "llama_kv_cache: size", "n_ctx ", "n_batch", "n_ubatch", "causal_attn", "file type",
        "compute buffer size", "- type ",
    };
    std::vector<std::string> out;
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        for (const char * k : keys) {
            if (line.find(k) != std::string::npos) {
                if (std::find(out.begin(), out.end(), line) == out.end()) out.push_back(line);
                break;
            }
        }
    }
    return out;
}

static std::string json_str(const std::string & s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':  o += "\\\""; break;
            case '\\': o += "\\\\"; break;
            case '\n': o += "\\n"; break;
            case '\r': o += "\\r"; break;
            case '\t': o += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    snprintf(buf, sizeof(buf), "\\u%04x", c);
                    o += buf;
                } else {
                    o += (char) c;
                }
        }
    }
    return o + "\"";
}

static std::string fmt_float(float f) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%.9g", (double) f);
    return buf;
}

static bool read_prompts(const char * path, std::vector<std::string> & out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    std::string line;
    if (!std::getline(f, line)) return false;
    const long n = std::stol(line);
    for (long i = 0; i < n; ++i) {
        if (!std::getline(f, line)) return false;
        const long nb = std::stol(line);
        std::string s((size_t) nb, '\0');
        f.read(&s[0], nb);
        if (f.gcount() != nb) return false;
        f.get();  // trailing '\n'
        out.push_back(s);
    }
    return true;
}

// a ggml type by its name (ggml_type_name), as common/arg.cpp's kv_cache_type_from_str
static bool type_from_name(const std::string & name, enum ggml_type & out) {
    for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
        const char * n = ggml_type_name((enum ggml_type) t);
        if (n && name == n) { out = (enum ggml_type) t; return true; }
    }
    return false;
}

static std::vector<std::pair<llama_token, float>> topk(const float * logits, int n_vocab, int k) {
    std::vector<int> idx(n_vocab);
    for (int i = 0; i < n_vocab; ++i) idx[i] = i;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
        if (logits[a] != logits[b]) return logits[a] > logits[b];
        return a < b;
    });
    std::vector<std::pair<llama_token, float>> r;
    for (int i = 0; i < k; ++i) r.push_back({idx[i], logits[idx[i]]});
    return r;
}

int main(int argc, char ** argv) {
    std::setlocale(LC_NUMERIC, "C");
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL INPUT OUTPUT [N_PREDICT=64] [N_THREADS=2] [FA=auto|on|off] [N_CTX=2048] "
                        "[TYPE_K=f16] [TYPE_V=f16]\n", argv[0]);
        return 2;
    }
    const std::string model_path = argv[1];
    const char * input_path  = argv[2];
    const char * output_path = argv[3];
    const int n_predict = argc > 4 ? atoi(argv[4]) : 64;
    const int n_threads = argc > 5 ? atoi(argv[5]) : 2;
    const std::string fa = argc > 6 ? argv[6] : "auto";
    const int n_ctx = argc > 7 ? atoi(argv[7]) : 2048;
    const std::string type_k_name = argc > 8 ? argv[8] : "";
    const std::string type_v_name = argc > 9 ? argv[9] : "";

    std::vector<std::string> prompts;
    if (!read_prompts(input_path, prompts)) {
        fprintf(stderr, "error: cannot parse %s\n", input_path);
        return 1;
    }

    const char * v = getenv("GOLDEN_VERBOSE");
    g_verbose = v && *v && strcmp(v, "0") != 0;
    llama_log_set(log_cb, nullptr);
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mparams);
    if (!model) {
        fprintf(stderr, "error: unable to load model %s\n", model_path.c_str());
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    // add_special = true lets llama_tokenize apply the model's own add_bos/add_eos settings
    // (SmolLM2: tokenizer.ggml.add_bos_token = false, so no BOS is added).
    const bool add_special = true;
    const bool parse_special = true;

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_ctx;
    cparams.n_batch = n_ctx;            // whole prompt in one llama_decode call
    // n_ubatch left at its default (512): prompts are shorter, so one ubatch
    cparams.n_threads = n_threads;
    cparams.n_threads_batch = n_threads;
    if (fa == "on") {
        cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    } else if (fa == "off") {
        cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    } else {
        cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    }

    for (const auto & tn : {std::make_pair(&type_k_name, &cparams.type_k), std::make_pair(&type_v_name, &cparams.type_v)}) {
        if (!tn.first->empty() && !type_from_name(*tn.first, *tn.second)) {
            fprintf(stderr, "error: unknown cache type %s\n", tn.first->c_str());
            return 2;
        }
    }

    std::ostringstream js;
    std::string fa_resolved = "unknown";
    std::string prompts_json;

    for (size_t p = 0; p < prompts.size(); ++p) {
        const std::string & text = prompts[p];
        const int n_prompt = -llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), nullptr, 0, add_special, parse_special);
        std::vector<llama_token> toks(n_prompt);
        if (llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), toks.data(), n_prompt, add_special, parse_special) != n_prompt) {
            fprintf(stderr, "error: tokenization failed for prompt %zu\n", p);
            return 1;
        }
        if (n_prompt + n_predict > n_ctx || n_prompt > (int) cparams.n_ubatch) {
            fprintf(stderr, "error: prompt %zu has %d tokens; n_ctx=%d n_ubatch=%u\n", p, n_prompt, n_ctx, cparams.n_ubatch);
            return 1;
        }

        const size_t log_mark = g_log.size();
        llama_context * ctx = llama_init_from_model(model, cparams);
        if (!ctx) {
            fprintf(stderr, "error: failed to create context\n");
            return 1;
        }
        if (fa == "on") {
            fa_resolved = "enabled";
        } else if (fa == "off") {
            fa_resolved = "disabled";
        } else if (g_log.find("Flash Attention enabled", log_mark) != std::string::npos) {
            fa_resolved = "enabled";
        } else if (g_log.find("Flash Attention not supported", log_mark) != std::string::npos) {
            fa_resolved = "disabled";
        }

        llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
        llama_sampler_chain_add(smpl, llama_sampler_init_greedy());

        llama_batch batch = llama_batch_init(std::max(n_prompt, 1), 0, 1);
        batch.n_tokens = n_prompt;
        for (int i = 0; i < n_prompt; ++i) {
            batch.token[i] = toks[i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = (i == n_prompt - 1);
        }

        std::vector<llama_token> gen;
        std::vector<std::vector<std::pair<llama_token, float>>> top5s;
        std::vector<float> last_logits;
        int n_past = 0;

        for (int step = 0; step < n_predict; ++step) {
            if (llama_decode(ctx, batch) != 0) {
                fprintf(stderr, "error: llama_decode failed (prompt %zu, step %d)\n", p, step);
                return 1;
            }
            n_past += batch.n_tokens;
            const float * logits = llama_get_logits_ith(ctx, -1);
            if (step == 0) last_logits.assign(logits, logits + n_vocab);
            top5s.push_back(topk(logits, n_vocab, 5));

            const llama_token id = llama_sampler_sample(smpl, ctx, -1);
            if (id != top5s.back()[0].first) {
                fprintf(stderr, "error: greedy sampler chose %d but argmax is %d\n", id, top5s.back()[0].first);
                return 1;
            }
            gen.push_back(id);

            batch.n_tokens = 1;
            batch.token[0] = id;
            batch.pos[0] = n_past;
            batch.n_seq_id[0] = 1;
            batch.seq_id[0][0] = 0;
            batch.logits[0] = true;
        }

        // detokenized generation up to (excluding) the first end-of-generation token, rendered as
        // llama-completion prints it (special = false) -- used to check the harness against the CLI
        int first_eog = -1;
        std::string text_out;
        for (size_t i = 0; i < gen.size(); ++i) {
            if (llama_vocab_is_eog(vocab, gen[i])) { first_eog = (int) i; break; }
            char buf[256];
            const int n = llama_token_to_piece(vocab, gen[i], buf, sizeof(buf), 0, false);
            if (n < 0) { fprintf(stderr, "error: token_to_piece failed\n"); return 1; }
            text_out.append(buf, n);
        }

        std::string s = "{\"first_eog_index\":" + std::to_string(first_eog) + ",\"text\":" + json_str(text_out) + ",\"prompt_ids\":[";
        for (int i = 0; i < n_prompt; ++i) s += (i ? "," : "") + std::to_string(toks[i]);
        s += "],\"generated_ids\":[";
        for (size_t i = 0; i < gen.size(); ++i) s += (i ? "," : "") + std::to_string(gen[i]);
        s += "],\"top5\":[";
        for (size_t i = 0; i < top5s.size(); ++i) {
            s += i ? ",[" : "[";
            for (size_t j = 0; j < top5s[i].size(); ++j) {
                s += (j ? ",[" : "[") + std::to_string(top5s[i][j].first) + "," + fmt_float(top5s[i][j].second) + "]";
            }
            s += "]";
        }
        s += "],\"last_logits\":[";
        for (int i = 0; i < n_vocab; ++i) {
            if (i) s += ",";
            s += fmt_float(last_logits[i]);
        }
        s += "]}";
        prompts_json += (p ? ",\n" : "") + s;

        llama_batch_free(batch);
        llama_sampler_free(smpl);
        llama_free(ctx);
        fprintf(stderr, "golden_generate: prompt %zu/%zu done (%d prompt tokens)\n", p + 1, prompts.size(), n_prompt);
    }

    js << "{\"llama_version\":" << json_str(llama_version())
       << ",\"ggml_version\":" << json_str(ggml_version())
       << ",\"ggml_commit\":" << json_str(ggml_commit())
       << ",\"system_info\":" << json_str(llama_print_system_info())
       << ",\"n_threads\":" << n_threads
       << ",\"n_threads_batch\":" << n_threads
       << ",\"n_ctx\":" << cparams.n_ctx
       << ",\"n_batch\":" << cparams.n_batch
       << ",\"n_ubatch\":" << cparams.n_ubatch
       << ",\"flash_attn_requested\":" << json_str(fa)
       << ",\"flash_attn_resolved\":" << json_str(fa_resolved)
       << ",\"type_k\":" << json_str(ggml_type_name(cparams.type_k))
       << ",\"type_v\":" << json_str(ggml_type_name(cparams.type_v))
       << ",\"add_special\":" << (add_special ? "true" : "false")
       << ",\"parse_special\":" << (parse_special ? "true" : "false")
       << ",\"vocab_add_bos\":" << (llama_vocab_get_add_bos(vocab) ? "true" : "false")
       << ",\"n_vocab\":" << n_vocab
       << ",\"n_predict\":" << n_predict
       << ",\"llama_log\":[";
    {
        const auto lines = interesting_log_lines(g_log);
        for (size_t i = 0; i < lines.size(); ++i) js << (i ? "," : "") << json_str(lines[i]);
    }
    js << "],\"prompts\":[\n" << prompts_json << "\n]}\n";

    std::ofstream out(output_path, std::ios::binary);
    out << js.str();
    out.close();

    llama_model_free(model);
    llama_backend_free();
    return 0;
}
