package main

// Temporary: each of these moves to its own file as its issue lands.
