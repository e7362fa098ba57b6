// Test helper: recipes that must be refused with an error naming the YAML file, line and
// key path. Header-only: the layer's test program is built from *_test.cc files alone.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "trainer/recipe.h"

namespace petaring::testing_recipes {

struct RecipeErrorCase {
  std::string extra;     // YAML appended to the test's base recipe
  std::string expected;  // a piece of the message, e.g. "r.yaml:7: collectives.timeout_s: "
};

// Parses make_text(extra) as "r.yaml" for every case: each must fail with
// kInvalidArgument and a message containing `expected`.
inline void expect_recipe_errors(const std::function<std::string(const std::string&)>& make_text,
                                 const std::vector<RecipeErrorCase>& cases) {
  for (const RecipeErrorCase& c : cases) {
    try {
      parse_recipe(make_text(c.extra), "r.yaml");
      ADD_FAILURE() << "accepted: " << c.extra;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos)
          << e.what() << "\nexpected: " << c.expected;
    }
  }
}

}  // namespace petaring::testing_recipes
