describe('throwaway', () => {
  it('takes long', async () => { await new Promise((r) => setTimeout(r, 20000)); });
});
