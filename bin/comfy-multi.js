#!/usr/bin/env node
// Thin launcher so `npm start`, `npx comfy-multi` and an installed bin all run the built CLI.
import '../dist/cli/index.js';
