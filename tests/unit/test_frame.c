#include <criterion/criterion.h>
Test(placeholder, frame) { cr_assert(1); }
