/*
 * no_handlers.c - a shared object that is not a Rhino handler at all: it does
 * not include rhino.h, so it lacks rhino_module_handlers and the loader must
 * say so instead of loading nothing.
 */
int rhino_test_plain_function(int x);

int
rhino_test_plain_function(int x)
{
    return x + 1;
}
