// `petaring bench train`: whole-epoch training throughput of a recipe, petaring beside the
// PyTorch DDP reference (examples/scripts/torch_ddp_reference.py, gloo backend, CPU) with
// the same model, data, optimizer, batch and number of ranks, runs interleaved in one
// invocation so that both see the same machine. Reports medians and their ratio.
// A gpt recipe (model.type gpt) is measured in tokens/s over --steps optimizer steps
// beside examples/scripts/torch_gpt_reference.py instead; `--precision f32,bf16` runs
// ours once per training.precision in the same interleaved rounds.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/bench.h"
#include "runtime/error.h"
#include "trainer/recipe.h"

namespace petaring::cli {
namespace {

struct BenchTrainArgs {
  std::string recipe = "examples/recipes/fashion_mlp.yaml";
  std::vector<int> ranks = {1, 2};
  int repeats = 3;
  std::string reference = "torch";
  std::string python = "/usr/bin/python3";
  std::string script = "examples/scripts/torch_ddp_reference.py";
  std::string gpt_script = "examples/scripts/torch_gpt_reference.py";
  int64_t steps = 50;  // gpt recipes: optimizer steps per run
  std::vector<std::string> precisions;  // gpt recipes: training.precision values; {} = the recipe's
  bool json = false;
};

std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `command` with sh, returns its stdout; throws with the command when it fails.
std::string run_command(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) PR_FAIL(kInternal, "cannot start: ", command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int status = ::pclose(pipe);
  if (status != 0) PR_FAIL(kFailedPrecondition, "benchmark run failed (status ", status, "): ", command);
  return out;
}

nlohmann::json last_final_record(const std::string& text, const std::string& what) {
  std::istringstream lines(text);
  std::string line;
  nlohmann::json found;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_discarded() && record.value("event", "") == "final") found = record;
  }
  if (found.is_null()) PR_FAIL(kFailedPrecondition, what, " printed no final metrics record");
  return found;
}

// `overrides`: extra command-line text, e.g. " --set training.max_steps=50".
nlohmann::json run_petaring(const BenchTrainArgs& args, int np, const std::string& overrides = "") {
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string metrics = std::filesystem::temp_directory_path().string() + "/petaring_bench_" +
                        std::to_string(::getpid()) + ".jsonl";
  std::string command;
  if (np > 1) {
    command = "mpirun " + std::string(::geteuid() == 0 ? "--allow-run-as-root " : "") +
              "--oversubscribe -np " + std::to_string(np) + " ";
  }
  command += quote(self) + " --log warn train " + quote(args.recipe) + " --metrics " + quote(metrics) +
             overrides + " > /dev/null";
  run_command(command);
  std::ifstream in(metrics);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(metrics);
  return last_final_record(text.str(), "petaring train");
}

nlohmann::json run_reference(const BenchTrainArgs& args, const Recipe& recipe, int np) {
  std::string layers;
  for (int64_t size : recipe.model.layers) layers += (layers.empty() ? "" : ",") + std::to_string(size);
  std::ostringstream command;
  command << quote(args.python) << " " << quote(args.script) << " --np " << np << " --data "
          << quote(recipe.data.path) << " --layers " << layers << " --init " << recipe.model.init
          << (recipe.data.normalize ? " --normalize" : "") << " --lr " << recipe.optimizer.lr
          << " --momentum " << recipe.optimizer.momentum << " --batch "
          << recipe.training.batch_size << " --epochs " << recipe.training.epochs << " --seed "
          << recipe.training.seed << " 2>/dev/null";
  return last_final_record(run_command(command.str()), "the PyTorch reference");
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

void check_reference_available(const BenchTrainArgs& args, const std::string& script) {
  std::string probe = quote(args.python) + " -c 'import torch' > /dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    PR_FAIL(kNotFound, args.python, " cannot import torch: install Debian's python3-torch ",
            "(apt-get install python3-torch), or pass --reference none");
  }
  if (!std::filesystem::exists(script)) {
    PR_FAIL(kNotFound, script, ": no such file; run from the petaring source folder or pass --script");
  }
}


// ---- GPT recipes (model.type gpt): tokens/s over a fixed number of optimizer steps,
// beside examples/scripts/torch_gpt_reference.py (same model, text, AdamW schedule,
// clipping, batch and ranks). Both time every step of the run, start-up excluded.

nlohmann::json run_reference_gpt(const BenchTrainArgs& args, const Recipe& recipe, int np) {
  const ModelConfig& m = recipe.model;
  const OptimizerConfig& o = recipe.optimizer;
  if (o.type != "adamw" || o.schedule != "cosine") {
    PR_FAIL(kInvalidArgument, args.recipe, ": the GPT reference trains with AdamW and a cosine "
            "schedule; set optimizer.type: adamw and optimizer.schedule: cosine");
  }
  std::ostringstream command;
  command << quote(args.python) << " " << quote(args.gpt_script) << " --np " << np << " --data "
          << quote(recipe.data.path) << " --vocab " << m.vocab << " --context " << m.context
          << " --layers " << m.blocks << " --heads " << m.heads << " --dim " << m.dim
          << " --tie " << (m.tie_embeddings ? 1 : 0) << " --lr " << o.lr << " --min-lr "
          << o.min_lr << " --warmup " << o.warmup_steps << " --beta1 " << o.betas[0]
          << " --beta2 " << o.betas[1] << " --weight-decay " << o.weight_decay << " --clip "
          << o.clip_grad_norm << " --batch " << recipe.training.batch_size << " --steps "
          << args.steps << " --seed " << recipe.training.seed << " 2>/dev/null";
  return last_final_record(run_command(command.str()), "the PyTorch GPT reference");
}

int run_bench_train_gpt(const BenchTrainArgs& args, const Recipe& recipe) {
  if (recipe.data.type != "text") {
    PR_FAIL(kInvalidArgument, args.recipe, ": the GPT benchmark's reference reads a text file; "
            "use data.type text");
  }
  if (recipe.training.grad_accum_steps != 1) {
    PR_FAIL(kInvalidArgument, args.recipe, ": the GPT reference takes one micro-batch per step; "
            "set training.grad_accum_steps: 1");
  }
  const bool with_reference = args.reference == "torch";
  if (with_reference) check_reference_available(args, args.gpt_script);
  const std::string overrides = " --set training.max_steps=" + std::to_string(args.steps) +
                                " --set training.log_every=" + std::to_string(args.steps) +
                                " --set training.evaluate=false";
  const std::vector<std::string> precisions =
      args.precisions.empty() ? std::vector<std::string>{recipe.training.precision} : args.precisions;
  if (!args.json) {
    std::printf("# %s, %lld steps per run, %d run(s) each, interleaved; tokens/s (median)\n",
                args.recipe.c_str(), static_cast<long long>(args.steps), args.repeats);
    std::printf("%5s", "ranks");
    for (const std::string& p : precisions) {
      std::printf(" %14s %9s", ("petaring-" + p).c_str(), "loss");
    }
    std::printf(" %14s %9s", "pytorch-ddp", "loss");
    for (const std::string& p : precisions) std::printf(" %10s", (p + "/ddp").c_str());
    std::printf("\n");
  }
  for (int np : args.ranks) {
    std::vector<std::vector<double>> ours(precisions.size()), our_loss(precisions.size());
    std::vector<double> theirs, their_loss;
    for (int rep = 0; rep < args.repeats; ++rep) {
      for (size_t i = 0; i < precisions.size(); ++i) {
        nlohmann::json a =
            run_petaring(args, np, overrides + " --set training.precision=" + precisions[i]);
        ours[i].push_back(a["tokens_per_s"].get<double>());
        our_loss[i].push_back(a["loss"].get<double>());
      }
      if (with_reference) {
        nlohmann::json b = run_reference_gpt(args, recipe, np);
        theirs.push_back(b["tokens_per_s"].get<double>());
        their_loss.push_back(b["loss"].get<double>());
      }
    }
    const double theirs_med = with_reference ? median(theirs) : 0;
    if (args.json) {
      nlohmann::json row = {{"np", np}, {"steps", args.steps}, {"repeats", args.repeats}};
      for (size_t i = 0; i < precisions.size(); ++i) {
        // The first precision also under the keys of a one-precision run.
        const std::string prefix = i == 0 ? "petaring" : "petaring_" + precisions[i];
        row[prefix + "_precision"] = precisions[i];
        row[prefix + "_tokens_per_s"] = median(ours[i]);
        row[prefix + "_runs"] = ours[i];
        row[prefix + "_loss"] = median(our_loss[i]);
        if (with_reference && theirs_med > 0) {
          row[i == 0 ? std::string("ratio") : "ratio_" + precisions[i]] = median(ours[i]) / theirs_med;
        }
      }
      if (with_reference) {
        row["pytorch_tokens_per_s"] = theirs_med;
        row["pytorch_runs"] = theirs;
        row["pytorch_loss"] = median(their_loss);
      }
      std::cout << row.dump() << std::endl;
    } else {
      std::printf("%5d", np);
      for (size_t i = 0; i < precisions.size(); ++i) {
        std::printf(" %14.0f %9.4f", median(ours[i]), median(our_loss[i]));
      }
      if (with_reference) {
        std::printf(" %14.0f %9.4f", theirs_med, median(their_loss));
        for (size_t i = 0; i < precisions.size(); ++i) {
          std::printf(" %9.2fx", theirs_med > 0 ? median(ours[i]) / theirs_med : 0.0);
        }
      } else {
        std::printf(" %14s %9s", "-", "-");
        for (size_t i = 0; i < precisions.size(); ++i) std::printf(" %10s", "-");
      }
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}

int run_bench_train(const BenchTrainArgs& args) {
  Recipe recipe = load_recipe(args.recipe);
  if (recipe.model.type == "gpt") return run_bench_train_gpt(args, recipe);
  if (recipe.training.max_steps > 0) {
    PR_FAIL(kInvalidArgument, args.recipe, ": training.max_steps is set; the benchmark measures whole epochs");
  }
  const bool with_reference = args.reference == "torch";
  if (with_reference) check_reference_available(args, args.script);
  if (!args.json) {
    std::printf("# %s, %d run(s) each, interleaved; samples/s over whole epochs (median)\n",
                args.recipe.c_str(), args.repeats);
    std::printf("%5s %14s %9s %14s %9s %7s\n", "ranks", "petaring", "accuracy", "pytorch-ddp",
                "accuracy", "ratio");
  }
  for (int np : args.ranks) {
    std::vector<double> ours, theirs, our_acc, their_acc;
    for (int rep = 0; rep < args.repeats; ++rep) {
      nlohmann::json a = run_petaring(args, np);
      ours.push_back(a["samples_per_s"].get<double>());
      our_acc.push_back(a["test_accuracy"].get<double>());
      if (with_reference) {
        nlohmann::json b = run_reference(args, recipe, np);
        theirs.push_back(b["samples_per_s"].get<double>());
        their_acc.push_back(b["test_accuracy"].get<double>());
      }
    }
    double ours_med = median(ours);
    double theirs_med = with_reference ? median(theirs) : 0;
    double ratio = theirs_med > 0 ? ours_med / theirs_med : 0;
    if (args.json) {
      nlohmann::json row = {{"np", np}, {"repeats", args.repeats}, {"petaring_samples_per_s", ours_med},
                            {"petaring_runs", ours}, {"petaring_test_accuracy", median(our_acc)}};
      if (with_reference) {
        row["pytorch_samples_per_s"] = theirs_med;
        row["pytorch_runs"] = theirs;
        row["pytorch_test_accuracy"] = median(their_acc);
        row["ratio"] = ratio;
      }
      std::cout << row.dump() << std::endl;
    } else if (with_reference) {
      std::printf("%5d %14.0f %9.4f %14.0f %9.4f %6.2fx\n", np, ours_med, median(our_acc), theirs_med,
                  median(their_acc), ratio);
    } else {
      std::printf("%5d %14.0f %9.4f %14s %9s %7s\n", np, ours_med, median(our_acc), "-", "-", "-");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

void register_bench_train(CLI::App& bench, CommandTable& table) {
  auto args = std::make_shared<BenchTrainArgs>();
  CLI::App* sub = bench.add_subcommand("train", "training throughput beside PyTorch DDP (gloo, CPU)");
  sub->add_option("--recipe", args->recipe, "recipe to train")->capture_default_str();
  sub->add_option("--np", args->ranks, "rank counts to measure, e.g. --np 1,2")->delimiter(',')->capture_default_str();
  sub->add_option("--repeats", args->repeats, "runs per rank count and side")->check(CLI::Range(1, 100))->capture_default_str();
  sub->add_option("--reference", args->reference, "torch or none")->check(CLI::IsMember({"torch", "none"}))->capture_default_str();
  sub->add_option("--python", args->python, "Python with Debian's python3-torch")->capture_default_str();
  sub->add_option("--script", args->script, "the PyTorch reference script")->capture_default_str();
  sub->add_option("--gpt-script", args->gpt_script, "the PyTorch reference for gpt recipes")->capture_default_str();
  sub->add_option("--steps", args->steps, "gpt recipes: optimizer steps per run")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--precision", args->precisions,
                  "gpt recipes: training.precision values to run, e.g. --precision f32,bf16 "
                  "(default: the recipe's)")
      ->delimiter(',')
      ->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_flag("--json", args->json, "one JSON object per rank count");
  table.entries.emplace_back(sub, [args] { return run_bench_train(*args); });
}

}  // namespace petaring::cli
