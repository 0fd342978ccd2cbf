// Checking that code refuses something with the right llmserve::Error.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/error.h"

namespace llmserve::testing {

// Runs `body`, which must throw llmserve::Error of `code` (a test failure otherwise; other
// exceptions pass through); returns the error's message, empty when nothing was thrown.
template <typename Body>
std::string expect_error(ErrorCode code, Body body) {
    try {
        body();
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), code) << error.what();
        return error.what();
    }
    ADD_FAILURE() << "expected an llmserve::Error of code " << to_string(code);
    return {};
}

}  // namespace llmserve::testing
