using K2RL.Cli;

return await CliApp.RunAsync(args, CliContext.Console);
