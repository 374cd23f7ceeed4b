#compdef emocompose

_emocompose_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _EMOCOMPOSE_COMPLETE=complete_zsh emocompose)
}

compdef _emocompose_completion emocompose